//! The daemon's logs: to stderr through a writer thread, with a level that
//! a reload can change.

use hookfan::config::{Config, LogFormat};

/// Why `log.level` could not be changed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LevelError {
    /// Not a filter directive.
    #[error(transparent)]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    /// The subscriber is gone.
    #[error(transparent)]
    Reload(#[from] tracing_subscriber::reload::Error),
}

/// Sets the log filter (`log.level`) of the running daemon.
pub(crate) type LevelSetter = Box<dyn Fn(&str) -> Result<(), LevelError> + Send + Sync>;

/// Logs go to stderr through a writer thread: a slow or stuck stderr (a
/// full pipe) must never stall a shard or a connection. Should it fall
/// behind by more than its buffer, lines are dropped rather than waited
/// for. The returned guard flushes what is left when dropped; the level
/// setter changes `log.level` on a reload.
pub(crate) fn init(config: &Config) -> (tracing_appender::non_blocking::WorkerGuard, LevelSetter) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level).expect("validated");
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // The filter's handle has the type of the whole subscriber: one per format.
    macro_rules! init_reloadable {
        ($builder:expr) => {{
            let builder = $builder.with_filter_reloading();
            let handle = builder.reload_handle();
            builder.init();
            Box::new(move |level: &str| {
                let filter = tracing_subscriber::EnvFilter::try_new(level)?;
                Ok(handle.reload(filter)?)
            }) as LevelSetter
        }};
    }
    let setter = match config.log.format {
        LogFormat::Text => init_reloadable!(builder),
        LogFormat::Json => init_reloadable!(builder.json()),
    };
    (guard, setter)
}
