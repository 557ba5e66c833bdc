//! What the fuzz targets share: a Verb app served on loopback in a background runtime, and a panic
//! hook that turns any panic (also inside a server task, which tokio would otherwise swallow) into an
//! abort that libFuzzer records as a crash.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use verb::App;

/// How long the server may take to finish answering one input before the harness calls it a hang.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts `app` once per process (on a runtime of its own threads) and returns its address.
pub fn serve(cell: &'static OnceLock<SocketAddr>, app: fn() -> App) -> SocketAddr {
    *cell.get_or_init(|| {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("panic: {info}");
            std::process::abort();
        }));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                let handle = app().bind("127.0.0.1:0").await.expect("the app binds");
                tx.send(handle.local_addr()).expect("the harness waits");
                handle.stopped().await;
            });
        });
        rx.recv().expect("the server starts")
    })
}

/// Writes `bytes` to a new connection to `addr`, half-closes it, and reads the whole answer. Panics
/// (a crash for libFuzzer) when the server neither answers nor closes in time.
pub fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connect to the fuzzed server");
    stream.set_nodelay(true).ok();
    // The server may close early (an error answered before the input ends): then writing fails.
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(Shutdown::Write);
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("a read timeout");
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return answer,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // A reset after an error answer is the server closing on a peer it stopped reading.
            Err(_) => return answer,
        }
        assert!(
            started.elapsed() < ANSWER_TIMEOUT,
            "the server neither answered nor closed within {ANSWER_TIMEOUT:?}"
        );
    }
}
