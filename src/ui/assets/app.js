// The live events page: being built.
