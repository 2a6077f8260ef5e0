//! A deliberately faulty echo server: each kind of mistake is detected,
//! counted under its own kind, and fails the run (exit status 1).

mod common;

use common::{Fault, Run, faulty_echo, load, url};

/// Closed loop with 4 in flight, so a dropped or held-back message does not
/// stall its connection; a short timeout so lost messages are given up fast.
async fn against(fault: Fault) -> Run {
    against_with(fault, &[]).await
}

async fn against_with(fault: Fault, extra: &[&str]) -> Run {
    let addr = faulty_echo(fault).await;
    let u = url(addr);
    let mut args = vec![
        u.as_str(),
        "-c",
        "4",
        "-d",
        "1s",
        "--warmup",
        "0s",
        "-s",
        "64",
        "--in-flight",
        "4",
        "--timeout",
        "500ms",
    ];
    args.extend_from_slice(extra);
    load(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correct_echo_is_clean() {
    let run = against(Fault::None).await;
    assert_eq!(run.status, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.nonzero_errors(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_echoes_are_counted_lost() {
    let run = against(Fault::Drop(10)).await;
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(run.error("lost") > 0, "{:?}", run.nonzero_errors());
    for kind in ["corrupted", "duplicated", "reordered"] {
        assert_eq!(run.error(kind), 0, "{kind}: {:?}", run.nonzero_errors());
    }
    assert!(
        run.stderr.contains("FAIL: errors:") && run.stderr.contains("lost"),
        "{}",
        run.stderr
    );
}

/// These runs are closed-loop echo on plain TCP, which the worker's epoll
/// loop drives; the task per connection that drives every other mode
/// (`--driver tasks`) must count the same mistakes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_driver_counts_the_same_faults() {
    for (fault, kind) in [
        (Fault::Drop(10), "lost"),
        (Fault::Corrupt(10), "corrupted"),
        (Fault::Duplicate(10), "duplicated"),
    ] {
        let run = against_with(fault, &["--driver", "tasks"]).await;
        assert_eq!(run.status, 1, "{fault:?}: {}", run.stdout);
        assert!(run.error(kind) > 0, "{fault:?}: {:?}", run.nonzero_errors());
        assert_eq!(
            run.nonzero_errors().len(),
            1,
            "{fault:?}: {:?}",
            run.nonzero_errors()
        );
    }
}

/// A server that goes away mid-run: each connection counts the close, the
/// code is reported, and the closing handshake is answered (by the task,
/// once the epoll loop hands the connection back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_mid_run_is_counted_with_its_code_by_either_driver() {
    for driver in ["epoll", "tasks"] {
        let run = against_with(Fault::Close(20), &["--driver", driver]).await;
        assert_eq!(run.status, 1, "{driver}: {}", run.stdout);
        assert_eq!(
            run.error("closed"),
            4,
            "{driver}: {:?}",
            run.nonzero_errors()
        );
        assert_eq!(run.u64("/close_codes/1001"), 4, "{driver}: {}", run.json());
        assert!(
            run.u64("/messages_received") >= 4 * 15,
            "{driver}: {}",
            run.json()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_echoes_are_counted_corrupted() {
    let run = against(Fault::Corrupt(10)).await;
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(run.error("corrupted") > 0, "{:?}", run.nonzero_errors());
    for kind in ["lost", "duplicated", "reordered"] {
        assert_eq!(run.error(kind), 0, "{kind}: {:?}", run.nonzero_errors());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_echoes_are_counted_duplicated() {
    let run = against(Fault::Duplicate(10)).await;
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(run.error("duplicated") > 0, "{:?}", run.nonzero_errors());
    for kind in ["lost", "corrupted", "reordered"] {
        assert_eq!(run.error(kind), 0, "{kind}: {:?}", run.nonzero_errors());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_echoes_are_counted_reordered() {
    let run = against(Fault::Reorder(10)).await;
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(run.error("reordered") > 0, "{:?}", run.nonzero_errors());
    // A message held back when the sender stops may never be released: lost
    // is allowed here, nothing else.
    for kind in ["corrupted", "duplicated"] {
        assert_eq!(run.error(kind), 0, "{kind}: {:?}", run.nonzero_errors());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_is_caught_in_every_short_layout() {
    // Below 20 B a payload carries only part of the header (seq and conn,
    // seq alone, or seq's low bytes); a flipped bit must still be caught,
    // whichever byte it lands on.
    let addr = faulty_echo(Fault::Corrupt(5)).await;
    let u = url(addr);
    for (size, text) in [
        ("1", false),
        ("3", false),
        ("8", false),
        ("10", false),
        ("12", false),
        ("19", false),
        ("6", true),
        ("20", true),
        ("30", true),
    ] {
        let mut args = vec![
            u.as_str(),
            "-c",
            "2",
            "-d",
            "500ms",
            "--warmup",
            "0s",
            "-s",
            size,
            "--timeout",
            "300ms",
        ];
        if text {
            args.push("--text");
        }
        let run = load(&args).await;
        assert_eq!(run.status, 1, "size {size} text {text}: {}", run.stdout);
        assert!(
            run.error("corrupted") > 0,
            "size {size} text {text}: {:?}",
            run.nonzero_errors()
        );
        // With a whole sequence number a bad echo is only ever corrupted;
        // with its low bits alone a flipped bit can name an earlier message,
        // which then reads as a duplicate: still an error, never accepted.
        let whole_seq = size.parse::<usize>().unwrap() / if text { 2 } else { 1 } >= 8;
        if whole_seq {
            for kind in ["duplicated", "reordered"] {
                assert_eq!(
                    run.error(kind),
                    0,
                    "size {size}: {:?}",
                    run.nonzero_errors()
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_verify_mode_checks_the_bytes_it_names() {
    // Every echo has one bit flipped in the middle of its filler: `full`
    // catches each one, `sample` the one in 64 whose every byte it checks,
    // `header` none (the header is intact).
    for mode in ["full", "sample", "header"] {
        let run = against_with(Fault::Corrupt(1), &["--verify", mode]).await;
        assert_eq!(run.json()["config"]["verify"], mode);
        let (bad, good) = (run.error("corrupted"), run.u64("/messages_received"));
        let seen = (bad + good) as f64;
        match mode {
            "full" => assert!(
                bad > 0 && good == 0,
                "{mode}: {bad} corrupted, {good} clean"
            ),
            "sample" => assert!(
                bad > 0 && (seen / 128.0..=seen / 32.0).contains(&(bad as f64)),
                "{mode}: {bad} corrupted of {seen}, expected about 1 in 64"
            ),
            _ => assert!(
                bad == 0 && good > 0,
                "{mode}: {bad} corrupted, {good} clean"
            ),
        }
        assert_eq!(run.status, i32::from(bad > 0), "{mode}: {}", run.stderr);
        assert!(
            run.stdout.contains(match mode {
                "full" => "every byte of every echo verified",
                "sample" => "every byte of 1 in 64 verified",
                _ => "its other bytes not",
            }),
            "{mode}: {}",
            run.stdout
        );
    }
}
