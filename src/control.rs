//! Operator control: Unix signals become one [`Command`] enum, and the run state they steer
//! (stop, pause) is a `watch` channel the stages read between transactions.
//!
//! Signals: SIGUSR1 pause, SIGUSR2 resume, SIGHUP reload, SIGTERM/SIGINT graceful stop; a second
//! SIGTERM/SIGINT while stopping means "exit now" (the last committed checkpoint stays intact,
//! because PostgreSQL rolls back the open transaction when the connection drops).

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// What an operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    Reload,
    Shutdown,
}

/// Listens for the daemon's signals and forwards them as commands.
///
/// # Errors
/// Signal handlers cannot be installed.
pub fn listen() -> std::io::Result<mpsc::Receiver<Command>> {
    let (tx, rx) = mpsc::channel(16);
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        loop {
            let cmd = tokio::select! {
                _ = usr1.recv() => Command::Pause,
                _ = usr2.recv() => Command::Resume,
                _ = hup.recv() => Command::Reload,
                _ = term.recv() => Command::Shutdown,
                _ = int.recv() => Command::Shutdown,
            };
            if tx.send(cmd).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
