//! `--deflate` against the real wsecho: compressed echoes are verified like
//! any other, the report says what was negotiated, and a server that
//! declines gets an uncompressed run that says so.

mod common;

use common::{assert_valid, load, url, wsecho_with};

fn assert_clean(run: &common::Run) {
    assert_eq!(
        run.status, 0,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert_eq!(run.nonzero_errors(), Vec::<String>::new());
    assert!(run.u64("/messages_received") > 0, "{}", run.stdout);
    assert_valid(run.json());
}

async fn deflate_run(server_flags: &[&str], extra: &[&str]) -> common::Run {
    let u = url(wsecho_with(server_flags).await);
    let mut args = vec![
        u.as_str(),
        "-c",
        "4",
        "-d",
        "1s",
        "--warmup",
        "200ms",
        "--in-flight",
        "2",
    ];
    args.extend_from_slice(extra);
    load(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressible_payload_is_negotiated_compressed_and_verified() {
    let run = deflate_run(&[], &["--deflate", "--payload", "text-json", "-s", "1KiB"]).await;
    assert_clean(&run);
    let d = &run.json()["deflate"];
    assert_eq!(d["outcome"], "negotiated", "{d}");
    assert_eq!(run.u64("/deflate/negotiated"), 4);
    assert_eq!(d["offered"], "permessage-deflate; client_max_window_bits");
    assert_eq!(run.json()["config"]["payload"], "text-json");
    // Compressed both ways: fewer bytes on the wire than in the messages.
    assert!(run.u64("/deflate/wire_bytes_sent") < run.u64("/deflate/plain_bytes_sent") / 2);
    assert!(run.u64("/deflate/wire_bytes_received") < run.u64("/deflate/plain_bytes_received") / 2);
    assert!(
        run.stdout.contains("permessage-deflate: negotiated"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incompressible_and_large_messages_round_trip_compressed() {
    for extra in [
        &["--deflate", "-s", "20"][..],
        &["--deflate", "--binary", "-s", "16KiB"],
        // Larger than wsecho's 64 KiB chunk: echoed as a compressed message.
        &["--deflate", "--payload", "text-json", "-s", "300KiB"],
    ] {
        let run = deflate_run(&[], extra).await;
        assert_clean(&run);
        assert_eq!(run.json()["deflate"]["outcome"], "negotiated", "{extra:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_takeover_and_small_windows_are_honoured() {
    // The server keeps its context and so must we; then a 9-bit client
    // window we asked for in the offer.
    for (server, offer) in [
        ("takeover", "permessage-deflate"),
        (
            "on",
            "permessage-deflate; client_max_window_bits=9; server_max_window_bits=10",
        ),
    ] {
        let run = deflate_run(
            &["--deflate", server],
            &["--deflate", offer, "--payload", "text-json", "-s", "4KiB"],
        )
        .await;
        assert_clean(&run);
        let answer = run.json()["deflate"]["answer"].as_str().unwrap().to_owned();
        if server == "takeover" {
            assert!(!answer.contains("no_context_takeover"), "{answer}");
        } else {
            assert!(answer.contains("server_max_window_bits=10"), "{answer}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_declines_gets_an_uncompressed_run_reported_as_declined() {
    let run = deflate_run(
        &["--deflate", "off"],
        &["--deflate", "--payload", "text-json", "-s", "1KiB"],
    )
    .await;
    assert_clean(&run);
    assert_eq!(run.json()["deflate"]["outcome"], "declined");
    assert_eq!(run.u64("/deflate/declined"), 4);
    assert_eq!(run.u64("/deflate/negotiated"), 0);
    assert_eq!(run.u64("/deflate/wire_bytes_sent"), 0);
    assert!(
        run.stdout.contains("declined by the server"),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_offer_is_a_usage_error() {
    let run = common::load_raw(&["ws://127.0.0.1:9/", "--deflate", "permessage-deflate; x"]).await;
    assert_eq!(run.status, 2, "{}", run.stderr);
}
