//! Fuzzing the socket's frame reader: arbitrary bytes, split into arbitrary chunks, never make
//! it panic or return a frame over the limit, and a valid line after the garbage is still read.

use flotilla_protocol::framing::{FrameError, LineReader};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, BufReader, ReadBuf};

const MAX: usize = 64;
const VALID: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"run.list"}"#;

/// A reader that hands out its bytes in the given chunks, one chunk (or less) per read.
struct Chunked(VecDeque<Vec<u8>>);

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(front) = self.0.front_mut() {
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front[..n]);
            front.drain(..n);
            if front.is_empty() {
                self.0.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

fn split(bytes: &[u8], cuts: &[usize]) -> VecDeque<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = VecDeque::new();
    let mut start = 0;
    for p in points.into_iter().chain([bytes.len()]) {
        if p > start {
            chunks.push_back(bytes[start..p].to_vec());
            start = p;
        }
    }
    chunks
}

/// Every line the reader gives, and whether it stopped on an over-long frame.
fn read_all(chunks: VecDeque<Vec<u8>>, buffer: usize) -> (Vec<Vec<u8>>, bool) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut r = LineReader::new(BufReader::with_capacity(buffer, Chunked(chunks)), MAX);
        let mut lines = Vec::new();
        loop {
            match r.next_line().await {
                Ok(Some(l)) => lines.push(l),
                Ok(None) => return (lines, false),
                Err(FrameError::TooLarge { max }) => {
                    assert_eq!(max, MAX);
                    return (lines, true);
                }
                Err(FrameError::Io(e)) => panic!("an in-memory read failed: {e}"),
            }
        }
    })
}

#[test]
fn garbage_in_any_chunks_then_a_valid_line() {
    let garbage =
        proptest::collection::vec(prop_oneof![40 => any::<u8>(), 1 => Just(b'\n')], 0..300);
    let cuts = proptest::collection::vec(any::<usize>(), 0..20);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 3000,
        ..ProptestConfig::default()
    });
    let tried = AtomicUsize::new(0);
    let result = runner.run(&(garbage, cuts, 1usize..128), |(garbage, cuts, buffer)| {
        tried.fetch_add(1, Ordering::Relaxed);
        let mut input = garbage.clone();
        input.push(b'\n');
        input.extend_from_slice(VALID);
        input.push(b'\n');
        let (lines, too_large) = read_all(split(&input, &cuts), buffer);
        for l in &lines {
            prop_assert!(
                l.len() <= MAX,
                "a frame of {} bytes passed the {MAX} limit",
                l.len()
            );
        }
        if garbage.split(|&b| b == b'\n').all(|l| l.len() <= MAX) {
            prop_assert!(!too_large);
            // The garbage comes back line by line, exactly, and then the valid line.
            let mut expected: Vec<&[u8]> = garbage.split(|&b| b == b'\n').collect();
            expected.push(VALID);
            prop_assert_eq!(
                lines.iter().map(Vec::as_slice).collect::<Vec<_>>(),
                expected
            );
        } else {
            prop_assert!(too_large, "an over-long garbage line is refused");
        }
        Ok(())
    });
    println!(
        "framing fuzz: {} inputs tried",
        tried.load(Ordering::Relaxed)
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}
