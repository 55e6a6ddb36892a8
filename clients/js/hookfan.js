// hookfan JavaScript client: being built.
