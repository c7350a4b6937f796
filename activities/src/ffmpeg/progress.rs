//! ffmpeg's machine-readable progress (`-progress tcp://...`), not scraped from stderr.
//!
//! ffmpeg connects to a listener the activity opens on 127.0.0.1 (one OS-chosen port per run)
//! and writes blocks of `key=value` lines, each ending in `progress=continue` or
//! `progress=end`. [`ProgressParser`] turns that byte stream into [`ProgressUpdate`]s; values
//! that are missing, `N/A` or malformed are simply absent.

use std::{net::SocketAddr, time::Duration};
use tokio::{io::AsyncReadExt, net::TcpListener, sync::watch};

/// One block of `-progress` output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProgressUpdate {
    /// Output time reached so far.
    pub out_time: Option<Duration>,
    /// Frames written so far.
    pub frame: Option<u64>,
    /// Encoding speed relative to real time.
    pub speed: Option<f64>,
    /// Whether this is the last block (`progress=end`).
    pub ended: bool,
}

impl ProgressUpdate {
    /// The same update with `offset` taken off the output time (for outputs whose timestamps
    /// were moved with `-output_ts_offset`, which ffmpeg's report includes).
    pub fn without_offset(&self, offset: Duration) -> Self {
        Self {
            out_time: self.out_time.map(|time| time.saturating_sub(offset)),
            ..self.clone()
        }
    }

    /// The share of `duration` the output has reached, 0 to 1; `None` when either is unknown
    /// or the duration is zero.
    pub fn fraction_of(&self, duration: Duration) -> Option<f64> {
        let out_time = self.out_time?;
        if duration.is_zero() {
            return None;
        }
        Some((out_time.as_secs_f64() / duration.as_secs_f64()).clamp(0.0, 1.0))
    }
}

/// Splits the `-progress` byte stream into blocks, across arbitrary chunk boundaries.
#[derive(Debug, Default)]
pub struct ProgressParser {
    partial_line: Vec<u8>,
    block: ProgressUpdate,
}

impl ProgressParser {
    /// Feeds the next bytes; returns every block they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<ProgressUpdate> {
        let mut finished = Vec::new();
        for &byte in bytes {
            if byte != b'\n' {
                self.partial_line.push(byte);
                continue;
            }
            let line = std::mem::take(&mut self.partial_line);
            if let Some(update) = self.line(&String::from_utf8_lossy(&line)) {
                finished.push(update);
            }
        }
        finished
    }

    fn line(&mut self, line: &str) -> Option<ProgressUpdate> {
        let (key, value) = line.trim().split_once('=')?;
        let value = value.trim();
        match key.trim() {
            "out_time_us" => self.block.out_time = parse_micros(value),
            "frame" => self.block.frame = value.parse().ok(),
            "speed" => {
                self.block.speed = value
                    .trim_end_matches('x')
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite())
            }
            "progress" => {
                let mut update = std::mem::take(&mut self.block);
                update.ended = value == "end";
                return Some(update);
            }
            _ => {}
        }
        None
    }
}

/// Microseconds as a duration; negative, `N/A` and garbage are unknown.
fn parse_micros(value: &str) -> Option<Duration> {
    value
        .parse::<i64>()
        .ok()
        .filter(|us| *us >= 0)
        .map(|us| Duration::from_micros(us as u64))
}

/// A listener on 127.0.0.1 for one ffmpeg run's progress.
pub struct ProgressListener {
    listener: TcpListener,
}

impl ProgressListener {
    /// Binds a new listener on an OS-chosen port of 127.0.0.1.
    pub async fn bind() -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(("127.0.0.1", 0)).await?,
        })
    }

    /// The address to give ffmpeg's `-progress tcp://`.
    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts ffmpeg's connection and keeps the latest update in the returned channel until
    /// ffmpeg closes it. Reading never waits for the consumer, so a slow consumer cannot stall
    /// ffmpeg; a broken stream only ends the updates.
    pub fn latest(self) -> watch::Receiver<ProgressUpdate> {
        let (sender, receiver) = watch::channel(ProgressUpdate::default());
        tokio::spawn(async move {
            let Ok((mut stream, _)) = self.listener.accept().await else {
                return;
            };
            let mut parser = ProgressParser::default();
            let mut buffer = [0u8; 4096];
            while let Ok(read) = stream.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
                for update in parser.feed(&buffer[..read]) {
                    if sender.send(update).is_err() {
                        return;
                    }
                }
            }
        });
        receiver
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from ffmpeg 5.1 transcoding a 5 s clip to 1280x720.
    const CAPTURED: &[u8] = include_bytes!("testdata/progress-1280x720.txt");

    #[test]
    fn parses_real_ffmpeg_output() {
        let updates = ProgressParser::default().feed(CAPTURED);
        assert!(updates.len() >= 2, "{updates:?}");
        assert_eq!(updates[0].out_time, Some(Duration::from_micros(92_880)));
        assert_eq!(updates[0].frame, Some(1));
        assert_eq!(updates[0].speed, Some(39.8));
        assert!(!updates[0].ended);
        let last = updates.last().unwrap();
        assert!(last.ended);
        assert_eq!(last.out_time, Some(Duration::from_micros(5_015_510)));
        let times: Vec<_> = updates.iter().map(|u| u.out_time.unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    /// Captured from ffmpeg 5.1 encoding 1080p with x264's slow preset: while the encoder's
    /// lookahead fills, nothing is written yet and ffmpeg reports `speed=N/A`, `out_time_us=0`.
    const CAPTURED_SLOW_START: &[u8] = include_bytes!("testdata/progress-slow-start.txt");

    #[test]
    fn parses_real_output_with_unknown_values() {
        let updates = ProgressParser::default().feed(CAPTURED_SLOW_START);
        assert_eq!(updates.len(), 8);
        let first = &updates[0];
        assert_eq!(first.speed, None, "speed=N/A");
        assert_eq!(first.out_time, Some(Duration::ZERO));
        assert_eq!(first.fraction_of(Duration::from_secs(2)), Some(0.0));
        assert_eq!(
            first.fraction_of(Duration::ZERO),
            None,
            "a zero duration gives no fraction"
        );
        assert!(updates.last().unwrap().ended);
    }

    #[test]
    fn any_chunking_gives_the_same_updates() {
        let whole = ProgressParser::default().feed(CAPTURED);
        for chunk in [1, 3, 7, 64] {
            let mut parser = ProgressParser::default();
            let pieces: Vec<_> = CAPTURED
                .chunks(chunk)
                .flat_map(|piece| parser.feed(piece))
                .collect();
            assert_eq!(pieces, whole, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_partial_line_waits_for_its_end() {
        let mut parser = ProgressParser::default();
        assert!(parser.feed(b"out_time_us=150").is_empty());
        assert!(parser.feed(b"0000\nprogr").is_empty());
        let updates = parser.feed(b"ess=continue\n");
        assert_eq!(updates[0].out_time, Some(Duration::from_micros(1_500_000)));
    }

    #[test]
    fn unknown_and_malformed_values_are_absent() {
        let mut parser = ProgressParser::default();
        let updates = parser.feed(
            b"frame=N/A\nout_time_us=N/A\nspeed=N/A\nprogress=continue\n\
              out_time_us=-9223372036854775807\nspeed=nanx\nprogress=continue\n\
              garbage without equals\n\xff\xfe=\x00\nout_time_us=12abc\nprogress=end\n",
        );
        assert_eq!(updates.len(), 3);
        assert!(
            updates
                .iter()
                .all(|u| u.out_time.is_none() && u.frame.is_none() && u.speed.is_none())
        );
        assert!(updates[2].ended);
    }

    #[test]
    fn an_output_offset_is_taken_off() {
        let update = ProgressUpdate {
            out_time: Some(Duration::from_secs(9)),
            ..Default::default()
        };
        assert_eq!(
            update.without_offset(Duration::from_secs(1)).out_time,
            Some(Duration::from_secs(8))
        );
        assert_eq!(
            update.without_offset(Duration::from_secs(10)).out_time,
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn fraction_handles_zero_and_unknown() {
        let update = ProgressUpdate {
            out_time: Some(Duration::from_secs(15)),
            ..Default::default()
        };
        assert_eq!(update.fraction_of(Duration::from_secs(60)), Some(0.25));
        assert_eq!(update.fraction_of(Duration::from_secs(10)), Some(1.0));
        assert_eq!(update.fraction_of(Duration::ZERO), None);
        assert_eq!(
            ProgressUpdate::default().fraction_of(Duration::from_secs(1)),
            None
        );
    }

    #[tokio::test]
    async fn the_listener_keeps_the_latest_update_of_a_connection() {
        let listener = ProgressListener::bind().await.unwrap();
        let addr = listener.addr().unwrap();
        assert!(addr.ip().is_loopback());
        let mut latest = listener.latest();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(
            &mut client,
            b"out_time_us=1000000\nprogress=continue\nout_time_us=2000000\nprogress=end\n",
        )
        .await
        .unwrap();
        drop(client);
        while latest.changed().await.is_ok() {}
        let last = latest.borrow().clone();
        assert!(last.ended);
        assert_eq!(last.out_time, Some(Duration::from_secs(2)));
    }
}
