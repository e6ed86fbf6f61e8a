//! Backtraces of panics in job code, captured at the panic.
//!
//! A panic's backtrace exists only while it unwinds; by the time `catch_unwind`
//! hands the runtime the payload, the stack is gone. So a worker installs, once per
//! process, a panic hook that captures the backtrace (unresolved: symbols are read
//! only if it is taken) into a thread-local slot, then calls the hook that was
//! there before (the default one prints the message as usual). `catch_unwind`
//! returns on the thread that panicked with nothing run in between, so the slot
//! then holds this panic's backtrace.
//!
//! The cost falls on panics only: nothing is added to a run's per-item loop.

use std::backtrace::Backtrace;
use std::cell::RefCell;
use std::sync::Once;

use crate::store::Failure;

thread_local! {
    /// The backtrace of the last panic on this thread, until taken.
    static LAST: RefCell<Option<Backtrace>> = const { RefCell::new(None) };
}

static INSTALL: Once = Once::new();

/// Installs the capturing hook (once per process), keeping the hook that was set.
pub(crate) fn install_hook() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let backtrace = Backtrace::force_capture();
            // a panic inside a TLS destructor has no slot left: keep nothing then
            let _ = LAST.try_with(|last| {
                if let Ok(mut last) = last.try_borrow_mut() {
                    *last = Some(backtrace);
                }
            });
            previous(info);
        }));
    });
}

/// The backtrace of the panic just caught on this thread, trimmed to the frames
/// that matter (below the panic machinery, above the executor) and bounded.
pub(crate) fn take_backtrace() -> Option<String> {
    let backtrace = LAST
        .try_with(|last| last.try_borrow_mut().ok().and_then(|mut l| l.take()))
        .ok()
        .flatten()?;
    Some(Failure::bounded_backtrace(&trim(&backtrace.to_string())))
}

/// Drops the frames of the panic machinery (and of this hook) from the top and the
/// executor's from the bottom.
fn trim(text: &str) -> String {
    // frames: a line `  N: function`, then `at file:line` lines
    let mut frames: Vec<(String, Vec<&str>)> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        match trimmed.split_once(": ") {
            Some((n, function)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => {
                frames.push((function.to_string(), vec![line]));
            }
            _ => match frames.last_mut() {
                Some((_, lines)) => lines.push(line),
                None => frames.push((String::new(), vec![line])),
            },
        }
    }
    // the top frames are the capture, this hook and the panic machinery, down to
    // the frame that raised the panic (`core::panicking::panic_fmt` …)
    let machinery = |f: &str| {
        f.is_empty()
            || f.starts_with("std::backtrace")
            || f.starts_with("iterjob::runtime::panics::install_hook")
            || (f.starts_with("<alloc::boxed::Box<") && f.contains("core::ops::function::Fn"))
            || f.starts_with("std::panicking")
            || f.starts_with("std::sys::backtrace")
            || f.contains("rust_begin_unwind")
            || f.starts_with("core::panicking")
            || f.starts_with("std::rt::begin_panic")
    };
    let start = frames.iter().position(|(f, _)| !machinery(f)).unwrap_or(0);
    let end = frames[start..]
        .iter()
        .position(|(f, _)| f.starts_with("tokio::runtime::"))
        .map_or(frames.len(), |i| start + i);
    let mut out: Vec<&str> = Vec::new();
    for (_, lines) in &frames[start..end] {
        out.extend(lines);
    }
    if end < frames.len() {
        out.push("  … the async executor's frames left out");
    }
    if out.is_empty() {
        return text.to_string();
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn explode() {
        panic!("boom in explode");
    }

    #[test]
    fn a_caught_panic_leaves_its_backtrace_for_this_thread() {
        install_hook();
        let caught = std::panic::catch_unwind(explode);
        assert!(caught.is_err());
        let backtrace = take_backtrace().expect("a backtrace");
        assert!(
            backtrace.contains("explode"),
            "the panicking function is in it:\n{backtrace}"
        );
        let first = backtrace.lines().next().unwrap_or_default();
        assert!(
            first.contains("explode"),
            "the panic machinery is trimmed: the first frame is the one that panicked:\n{backtrace}"
        );
        assert!(take_backtrace().is_none(), "taken once");
    }

    #[test]
    fn long_backtraces_are_cut_at_a_line_end() {
        let long: String = (0..5000).map(|i| format!("  {i}: frame_{i}\n")).collect();
        let cut = Failure::bounded_backtrace(&long);
        assert!(cut.len() <= crate::store::MAX_BACKTRACE_BYTES + 40);
        assert!(cut.ends_with("more lines"), "{}", &cut[cut.len() - 60..]);
        assert!(cut.contains("  0: frame_0\n"));
    }
}
