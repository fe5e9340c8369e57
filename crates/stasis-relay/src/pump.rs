//! Drives a [`RelayState`] over one leg and the local stream (the client on the host, the
//! sandbox's port in the agent) until the leg ends, in both directions at once: a side
//! never blocks on a write while the other direction could move, so two sides resending a
//! lot after a resume cannot wait on each other.

use std::future::Future;
use std::io;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::state::{Event, ProtocolError, RelayState};

/// Local bytes kept unacknowledged at most: past it the local stream is not read
/// (backpressure), with or without a leg.
pub const MAX_UNACKED: usize = 1024 * 1024;

/// How much one round puts on the leg at most.
const TRANSMIT_BUDGET: usize = 256 * 1024;

/// Why [`run`] returned.
#[derive(Debug)]
pub enum LegEnd {
    /// The leg broke (EOF or error) with the session unfinished: park it.
    Lost,
    /// Both directions ended, delivered and acknowledged: the session is over.
    Finished,
    /// The peer sent CLOSE.
    Closed,
    /// The local stream failed: the session cannot go on.
    LocalFailed(io::Error),
    /// The peer broke the protocol.
    Protocol(ProtocolError),
    /// `stop` resolved (the leg is to be dropped, the session kept).
    Stopped,
}

/// Relays until the leg ends. The local stream outlives legs: pass the same one to every
/// `run` of a session.
pub async fn run<LR, LW, R, W>(
    state: &mut RelayState,
    leg_r: &mut LR,
    leg_w: &mut LW,
    local_r: &mut R,
    local_w: &mut W,
    stop: impl Future<Output = ()>,
) -> LegEnd
where
    LR: AsyncRead + Unpin,
    LW: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    tokio::pin!(stop);
    let mut tx = BytesMut::new();
    let mut leg_buf = vec![0u8; 64 * 1024];
    let mut local_buf = vec![0u8; 64 * 1024];
    loop {
        if tx.is_empty() {
            state.transmit(&mut tx, TRANSMIT_BUDGET);
        }
        if state.eof_due() {
            let _ = local_w.shutdown().await;
            state.eof_delivered();
            continue;
        }
        if state.finished() && tx.is_empty() {
            return LegEnd::Finished;
        }
        let read_local = !state.local_ended() && state.unacked() < MAX_UNACKED;
        let delivery = state.next_delivery();
        tokio::select! {
            _ = &mut stop => return LegEnd::Stopped,
            r = leg_w.write(&tx), if !tx.is_empty() => match r {
                Ok(0) | Err(_) => return LegEnd::Lost,
                Ok(n) => tx.advance(n),
            },
            r = leg_r.read(&mut leg_buf), if delivery.is_none() => match r {
                Ok(0) | Err(_) => return LegEnd::Lost,
                Ok(n) => match state.receive(&leg_buf[..n]) {
                    Ok(Event::None) => {}
                    Ok(Event::Closed) => return LegEnd::Closed,
                    Err(e) => return LegEnd::Protocol(e),
                },
            },
            r = local_w.write(delivery.as_deref().unwrap_or_default()), if delivery.is_some() => match r {
                Ok(0) => return LegEnd::LocalFailed(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    state.delivered(n);
                    if state.next_delivery().is_none() {
                        let _ = local_w.flush().await;
                    }
                }
                Err(e) => return LegEnd::LocalFailed(e),
            },
            r = local_r.read(&mut local_buf), if read_local => match r {
                Ok(0) => state.local_eof(),
                Ok(n) => state.push_local(&local_buf[..n]),
                Err(e) => return LegEnd::LocalFailed(e),
            },
        }
    }
}

/// Sends CLOSE on a leg (best effort: the leg may be gone).
pub async fn send_close<LW: AsyncWrite + Unpin>(leg_w: &mut LW) {
    let mut b = BytesMut::new();
    crate::frame::Frame::Close.encode(&mut b);
    let _ = leg_w.write_all(&b).await;
    let _ = leg_w.flush().await;
}

/// Reads the local stream into `state` while there is no leg (bounded by
/// [`MAX_UNACKED`]; past it, waits for `stop`). Returns when `stop` resolves, or `Err`
/// when the local stream failed.
pub async fn read_local_while_parked<R: AsyncRead + Unpin>(
    state: &mut RelayState,
    local_r: &mut R,
    stop: impl Future<Output = ()>,
) -> io::Result<()> {
    tokio::pin!(stop);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let read_local = !state.local_ended() && state.unacked() < MAX_UNACKED;
        tokio::select! {
            _ = &mut stop => return Ok(()),
            r = local_r.read(&mut buf), if read_local => match r? {
                0 => state.local_eof(),
                n => state.push_local(&buf[..n]),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, split};

    /// A session whose leg is cut in the middle of a stream and resumed: every byte
    /// arrives once, in order, both ways.
    #[tokio::test]
    async fn survives_a_cut_leg() {
        let (client, mut client_far) = duplex(1024);
        let (app, mut app_far) = duplex(1024);
        let (mut cr, mut cw) = split(client);
        let (mut ar, mut aw) = split(app);
        let mut host = RelayState::new();
        let mut agent = RelayState::new();

        let n = 300_000usize;
        let data: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        let writer = {
            let data = data.clone();
            tokio::spawn(async move {
                client_far.write_all(&data).await.unwrap();
                let mut back = vec![0u8; 5];
                client_far.read_exact(&mut back).await.unwrap();
                (client_far, back)
            })
        };
        let app_task = tokio::spawn(async move {
            let mut got = vec![0u8; n];
            app_far.read_exact(&mut got).await.unwrap();
            app_far.write_all(b"thanks").await.unwrap();
            (app_far, got)
        });

        for round in 0..2 {
            let (leg_h, leg_a) = duplex(4096);
            let (mut hr, mut hw) = split(leg_h);
            let (mut lr, mut lw) = split(leg_a);
            host.attach(agent.received(), agent.received_fin()).unwrap();
            agent.attach(host.received(), host.received_fin()).unwrap();
            let cut = async {
                if round == 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await
                } else {
                    std::future::pending().await
                }
            };
            let h = run(&mut host, &mut hr, &mut hw, &mut cr, &mut cw, cut);
            let a = run(&mut agent, &mut lr, &mut lw, &mut ar, &mut aw, std::future::pending());
            let joined = tokio::time::timeout(std::time::Duration::from_secs(2), async {
                tokio::select! {
                    e = h => e,
                    e = a => e,
                }
            })
            .await;
            if round == 1 {
                break;
            }
            assert!(matches!(joined, Ok(LegEnd::Stopped) | Ok(LegEnd::Lost)), "{joined:?}");
        }
        let (_c, back) = writer.await.unwrap();
        let (_a, got) = app_task.await.unwrap();
        assert_eq!(got, data);
        assert_eq!(&back, b"thank");
    }
}
