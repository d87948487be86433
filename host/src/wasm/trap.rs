//! What a trap was, in words: its kind, the guest's own panic message, and
//! the innermost frames of the operator's code.

use super::log::GuestLog;

/// What kind of trap `err` is, in words.
pub(super) fn trap_kind(err: &wasmtime::Error) -> String {
    use wasmtime::Trap;
    match err.downcast_ref::<Trap>() {
        Some(Trap::UnreachableCodeReached) => {
            "wasm `unreachable` executed (a panic or abort in the operator)".to_string()
        }
        Some(Trap::StackOverflow) => "stack overflow".to_string(),
        Some(Trap::MemoryOutOfBounds) => "out-of-bounds memory access".to_string(),
        Some(Trap::Interrupt) => "interrupted: the call exceeded its deadline".to_string(),
        Some(Trap::IntegerDivisionByZero) => "integer division by zero".to_string(),
        Some(other) => other.to_string(),
        None => format!("{err:#}"),
    }
}

/// What explains a trap besides its kind: the guest's panic message when it
/// wrote one, and the innermost named frames, each after `; `.
pub(super) fn trap_context(err: &wasmtime::Error, log: &GuestLog) -> String {
    let mut out = String::new();
    // A Rust guest prints its panic message to stderr just before trapping;
    // the C, Python, JavaScript and Go SDKs end theirs with a line
    // `uncaught ...` (a JavaScript engine writes more after it); otherwise
    // the last thing the guest wrote is the best explanation there is.
    let stderr = log.take_stderr_tail();
    let explanation = match stderr.find("panicked at") {
        Some(i) => Some(
            stderr[i..]
                .split("\nnote: run with `RUST_BACKTRACE")
                .next()
                .unwrap_or_default(),
        ),
        None => stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("uncaught "))
            .or_else(|| {
                stderr.lines().rev().find(|l| {
                    !l.trim().is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE")
                })
            }),
    };
    if let Some(text) = explanation {
        let mut msg = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if msg.len() > 500 {
            let cut = (0..=500)
                .rev()
                .find(|i| msg.is_char_boundary(*i))
                .unwrap_or(0);
            msg.truncate(cut);
            msg.push_str("...");
        }
        out.push_str(&format!("; guest stderr: {msg}"));
    }
    if let Some(bt) = err.downcast_ref::<wasmtime::WasmBacktrace>() {
        let names: Vec<String> = bt
            .frames()
            .iter()
            .filter_map(|f| f.func_name())
            .map(|n| short_frame(&format!("{:#}", rustc_demangle::demangle(n))))
            .filter(|n| !is_runtime_frame(n))
            .take(4)
            .collect();
        if !names.is_empty() {
            out.push_str(&format!("; in {}", names.join(" <- ")));
        }
    }
    out
}

/// A demangled function name with a trait implementation's
/// `<Type as Trait>::method` shortened to `Type::method`, which names the
/// code's own crate first.
fn short_frame(name: &str) -> String {
    let Some(inner) = name.strip_prefix('<') else {
        return name.to_string();
    };
    let mut depth = 0usize;
    let mut as_at = None;
    for (i, c) in inner.char_indices() {
        match c {
            '<' => depth += 1,
            '>' if depth == 0 => {
                return match as_at {
                    Some(a) => format!("{}{}", &inner[..a], &inner[i + 1..]),
                    None => name.to_string(),
                };
            }
            '>' => depth -= 1,
            ' ' if depth == 0 && as_at.is_none() && inner[i..].starts_with(" as ") => {
                as_at = Some(i);
            }
            _ => {}
        }
    }
    name.to_string()
}

/// Frames of the language runtime and panic machinery, which say nothing
/// about where the operator failed.
fn is_runtime_frame(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "std::",
        "core::",
        "alloc::",
        "__rust",
        "rust_begin_unwind",
        "rust_panic",
        "wit_bindgen",
        "dlmalloc",
        "abort",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p)) || name.contains("panicking")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trait_impl_frames_name_the_type() {
        assert_eq!(
            short_frame("<my_op::_::Export as sluice_sdk::Guest>::process"),
            "my_op::_::Export::process"
        );
        assert_eq!(
            short_frame("<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop"),
            "alloc::vec::Vec<T>::drop"
        );
        assert_eq!(short_frame("my_op::f"), "my_op::f");
        assert_eq!(short_frame("<broken"), "<broken");
    }

    #[test]
    fn runtime_frames_are_hidden() {
        assert!(is_runtime_frame("std::thread::local::LocalKey<T>::with"));
        assert!(is_runtime_frame("rust_begin_unwind"));
        assert!(!is_runtime_frame("my_op::MyOp::process_record"));
    }
}
