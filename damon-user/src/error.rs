//! How errors are printed.
//!
//! The convention of this crate's errors: a message describes its own layer only, and the
//! error it wraps is reachable through [`source()`](Error::source), never repeated in the
//! message (or the variant is `#[error(transparent)]` and adds no layer). [`Chain`] prints an
//! error with all its causes; the CLI, the admin tree's log and a kdamond's exit reason all go
//! through it.
use std::{error::Error, fmt};

/// An error and its causes, `": "`-separated: `outer: cause: root cause`.
///
/// Each error of the chain is printed as it is, except the source of an aya 0.14 error whose
/// message already shows it (`EbpfError`'s `map error: {0}` and its kin, the `LoadError`s
/// that print their `io::Error`): that source is left out, its own causes are not.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut above = self.0;
        write!(f, "{above}")?;
        while let Some(cause) = above.source() {
            if !(repeats_its_source(above) && above.to_string().contains(&cause.to_string())) {
                write!(f, ": {cause}")?;
            }
            above = cause;
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The aya 0.14 errors whose message contains their source, which they also return from
/// `source()`: `EbpfError`'s `map error: {0}` and its kin, and the `LoadError`s that print the
/// `io::Error` (with the verifier's output). The chain shows that source once.
fn repeats_its_source(e: &(dyn Error + 'static)) -> bool {
    if let Some(e) = e.downcast_ref::<aya::EbpfError>() {
        return matches!(
            e,
            aya::EbpfError::ParseError(_)
                | aya::EbpfError::BtfError(_)
                | aya::EbpfError::MapError(_)
                | aya::EbpfError::ProgramError(_)
        );
    }
    if let Some(e) = e.downcast_ref::<aya::programs::ProgramError>() {
        return matches!(e, aya::programs::ProgramError::LoadError { .. });
    }
    if let Some(e) = e.downcast_ref::<aya::BtfError>() {
        return matches!(e, aya::BtfError::LoadError { .. });
    }
    false
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;
    use crate::{
        admin::{AdminError, BackendError},
        bpf::{BpfError, LayoutError, btf::BtfError, chase::ChaseError, sys::SyscallError},
        core::{CoreError, OpsError},
        record::{DecodeError, RecordError},
        runtime::{SpecError, StartError, TargetError},
    };

    fn eperm() -> io::Error {
        io::Error::from_raw_os_error(libc::EPERM)
    }

    fn json_error() -> serde_json::Error {
        match serde_json::from_str::<u32>("x") {
            Err(e) => e,
            Ok(v) => panic!("\"x\" parsed as {v}"),
        }
    }

    /// `damon record` without CAP_BPF and without a cached layout: the calibration program's
    /// first map cannot be created.
    fn failed_start() -> StartError {
        StartError::Layout(LayoutError::Bpf(BpfError::Load(aya::EbpfError::MapError(
            aya::maps::MapError::CreateError {
                name: "CONTROL".into(),
                io_error: eperm(),
            },
        ))))
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn a_failed_start_prints_each_cause_once() {
        let chain = Chain(&failed_start()).to_string();
        assert_eq!(
            chain,
            "probing the kernel layout: loading the calibration program: loading the eBPF \
             object failed: map error: failed to create map `CONTROL`: Operation not permitted \
             (os error 1)"
        );
        for part in [
            "probing the kernel layout",
            "loading the calibration program",
            "loading the eBPF object failed",
            "failed to create map `CONTROL`",
            "Operation not permitted",
        ] {
            assert_eq!(count(&chain, part), 1, "{part:?} in {chain}");
        }
    }

    #[test]
    fn a_failed_system_call_prints_its_os_error_once() {
        let err = StartError::Ops(OpsError::failed(
            "loading the eBPF programs",
            BpfError::Syscall(SyscallError {
                call: "bpf",
                io_error: eperm(),
            }),
        ));
        assert_eq!(
            Chain(&err).to_string(),
            "setting up the eBPF access check: loading the eBPF programs: bpf failed: Operation \
             not permitted (os error 1)"
        );
    }

    /// What the admin tree logs when `echo on > state` fails: the start error, flattened into
    /// the backend's message, under the kdamond's layer.
    #[test]
    fn a_refused_state_write_prints_each_cause_once() {
        let err = AdminError::Backend {
            kdamond: 0,
            source: BackendError::new(Chain(&failed_start()).to_string()),
        };
        let chain = Chain(&err).to_string();
        assert_eq!(
            chain,
            "kdamond 0: probing the kernel layout: loading the calibration program: loading the \
             eBPF object failed: map error: failed to create map `CONTROL`: Operation not \
             permitted (os error 1)"
        );
        assert_eq!(count(&chain, "Operation not permitted"), 1, "{chain}");
        assert_eq!(count(&chain, "probing the kernel layout"), 1, "{chain}");
    }

    #[test]
    fn a_corrupt_record_prints_each_cause_once() {
        let err = RecordError::Parse {
            path: "/tmp/damon.data".into(),
            source: DecodeError::Json {
                source: json_error(),
            },
        };
        assert_eq!(
            Chain(&err).to_string(),
            "/tmp/damon.data: invalid record json: expected value at line 1 column 1"
        );
    }

    /// The aya errors that print their source: the source is shown once, and what lies below
    /// it still shows.
    #[test]
    fn aya_errors_that_print_their_source_show_it_once() {
        let load = aya::EbpfError::ProgramError(aya::programs::ProgramError::LoadError {
            io_error: io::Error::from_raw_os_error(libc::EACCES),
            verifier_log: aya_obj::VerifierLog::new("R1 invalid mem access 'scalar'".into()),
        });
        let chain = Chain(&load).to_string();
        assert_eq!(
            chain,
            "program error: the BPF_PROG_LOAD syscall returned Permission denied (os error 13). \
             Verifier output: R1 invalid mem access 'scalar'"
        );
        let map = aya::EbpfError::MapError(aya::maps::MapError::CreateError {
            name: "SLOTS".into(),
            io_error: eperm(),
        });
        assert_eq!(
            Chain(&map).to_string(),
            "map error: failed to create map `SLOTS`: Operation not permitted (os error 1)"
        );
        // An aya error that does not print its source keeps it.
        let file = aya::EbpfError::FileError {
            path: "/x.o".into(),
            error: io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(
            Chain(&file).to_string(),
            "error loading /x.o: No such file or directory (os error 2)"
        );
    }

    /// The chain hides nothing of an error of ours that broke the convention: the tests of
    /// the printed chains would see the repetition.
    #[test]
    fn an_error_of_ours_that_repeats_its_source_shows_it_twice() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading /x: {0}")]
        struct Repeats(#[source] io::Error);
        assert_eq!(
            Chain(&Repeats(eperm())).to_string(),
            "reading /x: Operation not permitted (os error 1): Operation not permitted (os error \
             1)"
        );
    }

    /// Every error of this crate that has a source: its message leaves the source out.
    #[test]
    fn no_error_of_ours_prints_its_source() {
        let errors: Vec<Box<dyn Error>> = vec![
            Box::new(failed_start()),
            Box::new(StartError::Ops(OpsError::failed("x", eperm()))),
            Box::new(StartError::Core(CoreError::Spawn {
                name: "kdamond.0".into(),
                source: eperm(),
            })),
            Box::new(StartError::Spec(SpecError::Invalid(CoreError::NotRunning))),
            Box::new(StartError::Target(TargetError::Unreadable {
                pid: crate::core::Pid(42),
                comm: "sleep".into(),
                source: OpsError::failed("reading /proc/42/maps", eperm()),
            })),
            Box::new(LayoutError::Btf(BtfError::Read {
                path: "/sys/kernel/btf/vmlinux".into(),
                source: eperm(),
            })),
            Box::new(LayoutError::Chase(ChaseError::Bpf(BpfError::NoLayout))),
            Box::new(LayoutError::Pagemap(eperm())),
            Box::new(LayoutError::Page(eperm())),
            Box::new(BpfError::Program {
                name: "sample",
                source: aya::programs::ProgramError::NotLoaded,
            }),
            Box::new(BpfError::Map {
                name: "SLOTS",
                source: aya::maps::MapError::InvalidName { name: "S".into() },
            }),
            Box::new(BpfError::Pid {
                pid: crate::core::Pid(42),
                source: Box::new(ChaseError::Null { what: "pid" }),
            }),
            Box::new(SyscallError {
                call: "pidfd_open",
                io_error: eperm(),
            }),
            Box::new(AdminError::Backend {
                kdamond: 0,
                source: BackendError::new("refused"),
            }),
            Box::new(RecordError::Read {
                path: "/x".into(),
                source: eperm(),
            }),
            Box::new(RecordError::Write {
                path: "/x".into(),
                source: eperm(),
            }),
            Box::new(RecordError::Parse {
                path: "/x".into(),
                source: DecodeError::Decompress { source: eperm() },
            }),
            Box::new(RecordError::Encode {
                source: json_error(),
            }),
            Box::new(DecodeError::Json {
                source: json_error(),
            }),
        ];
        for err in &errors {
            let mut layer: &(dyn Error + 'static) = err.as_ref();
            while let Some(source) = layer.source() {
                let (text, cause) = (layer.to_string(), source.to_string());
                assert!(
                    repeats_its_source(layer) || !text.contains(&cause),
                    "{text:?} repeats its source {cause:?} ({err:?})"
                );
                layer = source;
            }
        }
    }
}
