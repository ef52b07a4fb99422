//! Serves each logical hook with the first candidate the running kernel accepts, keeping the
//! reason each earlier candidate was refused.
use std::{cell::OnceCell, collections::HashSet};

use aya::{
    Ebpf,
    programs::{FEntry, FExit, KProbe, Program, ProgramError, RawTracePoint, TracePoint},
};

use super::{
    HookStatus,
    catalogue::{Attach, BackendChoice, Family, LogicalHook, Setup, setup_of},
    support::{KernelSupport, refusal},
    time_wait::TimeWaitSetup,
};
use crate::btf::Btf;

/// Notes for the hooks of the per-flow accounting, or why each part of its setup failed.
pub struct FlowSetup {
    pub egress: Result<String, String>,
    pub reasons: Result<String, String>,
}

/// Why one candidate does not serve a hook, as `backend: reason`.
struct Refusal {
    text: String,
    /// The hook has no program for this family: worth saying only if nothing else attached.
    unimplemented: bool,
}

pub struct Attacher<'a> {
    ebpf: &'a mut Ebpf,
    btf: &'a Btf,
    support: KernelSupport,
    /// For each setup: a note for the status of the hooks using it, or why it is unusable.
    function_setup: Result<String, String>,
    drop_setup: Result<String, String>,
    handshake_setup: Result<String, String>,
    time_wait: TimeWaitSetup,
    /// Tracepoint programs (perf and raw) attached so far: a second hook served by one shares it.
    tracepoints: HashSet<&'static str>,
    /// What serves `paws_checks`, which counts every watched drop reason.
    drop_attach: Option<&'static Attach>,
    flow_setup: FlowSetup,
    /// Whether the programs on the `kfree_skb` tracepoint can serve, or why not; the function
    /// programs on the drop function do not need it.
    drop_tracepoint: Result<(), String>,
    /// aya's copy of the kernel BTF, which fentry/fexit loads need; parsed on first use.
    kernel_btf: OnceCell<Result<aya::Btf, String>>,
}

impl<'a> Attacher<'a> {
    pub fn new(
        ebpf: &'a mut Ebpf,
        btf: &'a Btf,
        support: KernelSupport,
        function_setup: Result<String, String>,
        drop_setup: Result<String, String>,
        handshake_setup: Result<String, String>,
        time_wait: TimeWaitSetup,
        flow_setup: FlowSetup,
        drop_tracepoint: Result<(), String>,
    ) -> Self {
        Attacher {
            ebpf,
            btf,
            support,
            function_setup,
            drop_setup,
            handshake_setup,
            time_wait,
            flow_setup,
            drop_tracepoint,
            tracepoints: HashSet::new(),
            drop_attach: None,
            kernel_btf: OnceCell::new(),
        }
    }

    pub fn serve(&mut self, hook: &'static LogicalHook, choice: BackendChoice) -> HookStatus {
        let mut refused: Vec<Refusal> = Vec::new();
        let allowed = |family: &Family| hook.tracepoints_only() || choice.allows(*family);
        for family in Family::ALL.into_iter().filter(allowed) {
            let mut candidates =
                hook.candidates.iter().filter(|attach| attach.family() == family).peekable();
            if candidates.peek().is_none() {
                let text = format!("{0}: no {0} equivalent implemented", family.name());
                refused.push(Refusal { text, unimplemented: true });
            }
            for attach in candidates {
                let setup = setup_of(hook, attach);
                match self.try_attach(setup, attach) {
                    Ok(note) => {
                        if setup == Setup::DropReasons {
                            self.drop_attach = Some(attach);
                        }
                        let serving = self.shared_drop_program(setup, attach).unwrap_or(attach);
                        return HookStatus {
                            name: hook.name.into(),
                            backend: serving.backend().into(),
                            target: serving.target(),
                            active: true,
                            detail: format!("{}: {}{note}", serving.target(), hook.counts),
                            refused: refused
                                .into_iter()
                                .filter(|r| !r.unimplemented)
                                .map(|r| r.text)
                                .collect(),
                            programs: programs_of(serving),
                        };
                    }
                    Err(reason) => {
                        // Which function, where a hook has several and the reason does not say.
                        let target = attach.target();
                        let text = if family == Family::Tracepoint || reason.contains(&target) {
                            format!("{}: {reason}", attach.backend())
                        } else {
                            format!("{}: {target}: {reason}", attach.backend())
                        };
                        refused.push(Refusal { text, unimplemented: false })
                    }
                }
            }
        }
        let refused: Vec<String> = refused.into_iter().map(|r| r.text).collect();
        HookStatus {
            name: hook.name.into(),
            backend: "none".into(),
            target: String::new(),
            active: false,
            detail: refused.join("; "),
            refused,
            programs: Vec::new(),
        }
    }

    /// Loads and attaches one candidate; on success, the note of its setup. A program that
    /// loaded but did not attach is unloaded again: it would serve nothing.
    fn try_attach(&mut self, setup: Setup, attach: &Attach) -> Result<String, String> {
        let note = match setup {
            Setup::FunctionOffsets => self.function_setup.clone()?,
            Setup::DropReasons => self.drop_setup.clone()?,
            Setup::Handshake => self.handshake_setup.clone()?,
            Setup::TimeWait => self.time_wait.note(attach.family())?,
            Setup::FlowEgress => self.flow_setup.egress.clone()?,
            Setup::FlowDrops => {
                self.drop_setup.clone()?;
                self.flow_setup.reasons.clone()?
            }
        };
        if self.shared_drop_program(setup, attach).is_some() {
            return Ok(note);
        }
        // Every tracepoint program of the drop setups sits on kfree_skb.
        let on_drop_tracepoint = matches!(setup, Setup::DropReasons | Setup::FlowDrops | Setup::TimeWait);
        if on_drop_tracepoint && attach.family() == Family::Tracepoint {
            self.drop_tracepoint.clone()?;
        }
        // A function program serving paws_time_wait takes its drops over from the drop programs.
        let hand_over = setup == Setup::TimeWait && attach.family() != Family::Tracepoint;
        if hand_over {
            self.time_wait.hand_over(self.ebpf, true)?;
        }
        let attached = self.attach(attach);
        if hand_over && attached.is_err() {
            self.time_wait.hand_over(self.ebpf, false)?;
        }
        attached.map(|()| note)
    }

    /// paws_time_wait's tracepoint candidate is paws_checks' program: where another program
    /// (the raw tracepoint, a function program) serves paws_checks, that one already counts the
    /// TIME_WAIT reason, and serves paws_time_wait too.
    fn shared_drop_program(&self, setup: Setup, attach: &Attach) -> Option<&'static Attach> {
        let shared = setup == Setup::TimeWait && attach.family() == Family::Tracepoint;
        self.drop_attach.filter(|served| shared && served.program() != attach.program())
    }

    fn attach(&mut self, attach: &Attach) -> Result<(), String> {
        // One program on a tracepoint may serve several hooks: attached once, then shared.
        let on_tracepoint = attach.family() == Family::Tracepoint;
        if on_tracepoint && self.tracepoints.contains(attach.program()) {
            return Ok(());
        }
        match *attach {
            Attach::Fentry { program, function } => {
                self.support.check_trampoline(self.btf, function)?;
                let btf = kernel_btf(&self.kernel_btf)?;
                let prog: &mut FEntry = program_of(self.ebpf, program)?;
                prog.load(function.name, btf).map_err(|e| refusal("load", &e))?;
                if let Err(e) = prog.attach() {
                    let _ = prog.unload();
                    return Err(refusal("attach", &e));
                }
            }
            Attach::Fexit { program, function } => {
                self.support.check_trampoline(self.btf, function)?;
                let btf = kernel_btf(&self.kernel_btf)?;
                let prog: &mut FExit = program_of(self.ebpf, program)?;
                prog.load(function.name, btf).map_err(|e| refusal("load", &e))?;
                if let Err(e) = prog.attach() {
                    let _ = prog.unload();
                    return Err(refusal("attach", &e));
                }
            }
            Attach::Kprobe { program, function } => {
                self.support.check_kprobe(self.btf, function)?;
                attach_kprobe(self.ebpf, program, function.name)?;
            }
            Attach::Kretprobe { entry, ret, function } => {
                self.support.check_kprobe(self.btf, function)?;
                attach_kprobe(self.ebpf, entry, function.name)?;
                if let Err(reason) = attach_kprobe(self.ebpf, ret, function.name) {
                    // Alone, the entry half would only fill the map of pending calls.
                    if let Ok(prog) = program_of::<KProbe>(self.ebpf, entry) {
                        let _ = prog.unload();
                    }
                    return Err(reason);
                }
            }
            Attach::RawTracepoint { program, name } => {
                let prog: &mut RawTracePoint = program_of(self.ebpf, program)?;
                prog.load().map_err(|e| refusal("load", &e))?;
                if let Err(e) = prog.attach(name) {
                    let _ = prog.unload();
                    return Err(refusal("attach", &e));
                }
            }
            Attach::Tracepoint { program, category, name } => {
                let prog: &mut TracePoint = program_of(self.ebpf, program)?;
                prog.load().map_err(|e| refusal("load", &e))?;
                if let Err(e) = prog.attach(category, name) {
                    let _ = prog.unload();
                    return Err(refusal("attach", &e));
                }
            }
        }
        if on_tracepoint {
            self.tracepoints.insert(attach.program());
        }
        Ok(())
    }
}

/// The programs of the object that `attach` loads.
fn programs_of(attach: &Attach) -> Vec<&'static str> {
    match *attach {
        Attach::Kretprobe { entry, ret, .. } => vec![entry, ret],
        Attach::Fentry { program, .. }
        | Attach::Fexit { program, .. }
        | Attach::Kprobe { program, .. }
        | Attach::Tracepoint { program, .. }
        | Attach::RawTracepoint { program, .. } => vec![program],
    }
}

/// Works for kprobes and kretprobes alike: the object says which one a program is.
fn attach_kprobe(ebpf: &mut Ebpf, program: &str, function: &str) -> Result<(), String> {
    let prog: &mut KProbe = program_of(ebpf, program)?;
    prog.load().map_err(|e| refusal("load", &e))?;
    if let Err(e) = prog.attach(function, 0) {
        let _ = prog.unload();
        return Err(refusal("attach", &e));
    }
    Ok(())
}

fn program_of<'e, T>(ebpf: &'e mut Ebpf, name: &str) -> Result<&'e mut T, String>
where
    &'e mut T: TryFrom<&'e mut Program, Error = ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("program {name} missing from the eBPF object"))?;
    program.try_into().map_err(|e: ProgramError| format!("program {name}: {e}"))
}

fn kernel_btf(cell: &OnceCell<Result<aya::Btf, String>>) -> Result<&aya::Btf, String> {
    cell.get_or_init(|| aya::Btf::from_sys_fs().map_err(|e| format!("kernel BTF unreadable: {e}")))
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::catalogue::KernelFunction;

    const F: KernelFunction = KernelFunction { name: "f", signature: "void f(void)" };

    #[test]
    fn a_kretprobe_pair_is_served_by_both_its_programs() {
        assert_eq!(programs_of(&Attach::Kretprobe { entry: "f_entry", ret: "f_ret", function: &F }), ["f_entry", "f_ret"]);
        assert_eq!(programs_of(&Attach::Fexit { program: "f_fexit", function: &F }), ["f_fexit"]);
    }
}
