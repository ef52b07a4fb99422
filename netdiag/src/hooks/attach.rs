//! Serves each logical hook with the first candidate the running kernel accepts, keeping the
//! reason each earlier candidate was refused. A program attaches once: every further hook its
//! candidate names shares it (one program per attach point).
use std::{cell::OnceCell, collections::HashMap};

use aya::{
    Ebpf,
    programs::{
        BtfTracePoint, FEntry, FExit, KProbe, Program, ProgramError, RawTracePoint, TracePoint,
        raw_trace_point::RawTracePointLinkId, tp_btf::BtfTracePointLinkId, trace_point::TracePointLinkId,
    },
};

use super::{
    HookStatus,
    catalogue::{Attach, BackendChoice, Family, LogicalHook},
    setup::Setup,
    support::{KernelSupport, refusal},
};
use crate::btf::Btf;

/// Why one candidate does not serve a hook, as `backend: reason`.
struct Refusal {
    text: String,
    /// The hook has no program for this family: worth saying only if nothing else attached.
    unimplemented: bool,
}

/// How a tracepoint program is attached (`None` while detached), so the agent can detach a
/// per-packet one and attach it again without loading it anew.
pub enum Link {
    Btf(Option<BtfTracePointLinkId>),
    Raw(Option<RawTracePointLinkId>, &'static str),
    Perf(Option<TracePointLinkId>, &'static str, &'static str),
    /// Function programs stay attached for the session.
    Kept,
}

pub struct Attacher<'a> {
    ebpf: &'a mut Ebpf,
    btf: &'a Btf,
    support: KernelSupport,
    setup: &'a Setup,
    /// Programs attached so far.
    pub links: HashMap<&'static str, Link>,
    /// What serves each hook so far, for the candidates that go alongside another hook's.
    served: HashMap<&'static str, &'static Attach>,
    /// aya's copy of the kernel BTF, which fentry/fexit and tp_btf loads need; parsed on
    /// first use.
    kernel_btf: OnceCell<Result<aya::Btf, String>>,
}

impl<'a> Attacher<'a> {
    pub fn new(ebpf: &'a mut Ebpf, btf: &'a Btf, support: KernelSupport, setup: &'a Setup) -> Self {
        Attacher {
            ebpf,
            btf,
            support,
            setup,
            links: HashMap::new(),
            served: HashMap::new(),
            kernel_btf: OnceCell::new(),
        }
    }

    pub fn serve(&mut self, hook: &'static LogicalHook, choice: BackendChoice) -> HookStatus {
        let mut refused: Vec<Refusal> = Vec::new();
        let allowed = |family: &Family| hook.tracepoints_only() || choice.allows(*family);
        for family in Family::ALL.into_iter().filter(allowed) {
            let mut candidates = hook
                .candidates
                .iter()
                .filter(|c| c.attach.family() == family && (hook.tracepoints_only() || choice.allows_attach(&c.attach)))
                .peekable();
            if candidates.peek().is_none() {
                let text = format!("{0}: no {0} equivalent implemented", family.name());
                refused.push(Refusal { text, unimplemented: true });
            }
            for candidate in candidates {
                let attach = &candidate.attach;
                let attached = self.setup.check(candidate.needs).and_then(|note| {
                    let serving = self.attach(attach)?;
                    Ok((note, serving))
                });
                match attached {
                    Ok((note, serving)) => {
                        self.served.insert(hook.name, serving);
                        return HookStatus {
                            name: hook.name.into(),
                            backend: serving.backend().into(),
                            target: serving.target(),
                            active: true,
                            detail: format!("{}: {}{note}", serving.target(), hook.counts),
                            refused: refused.into_iter().filter(|r| !r.unimplemented).map(|r| r.text).collect(),
                            per_packet: serving.per_packet(),
                            armed: true,
                            programs: serving.programs(),
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
            per_packet: false,
            armed: false,
            programs: Vec::new(),
        }
    }

    /// Attaches one candidate's programs, unless attached already; returns what serves the
    /// hook. A program that loaded but did not attach is unloaded again: it would serve nothing.
    fn attach(&mut self, attach: &'static Attach) -> Result<&'static Attach, String> {
        if let Attach::Alongside { hook } = attach {
            return self.served.get(hook).copied().ok_or_else(|| format!("{hook} is not served"));
        }
        if attach.programs().iter().all(|p| self.links.contains_key(p)) {
            return Ok(attach);
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
                self.links.insert(program, Link::Kept);
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
                self.links.insert(program, Link::Kept);
            }
            Attach::Kprobe { program, function } => {
                self.support.check_kprobe(self.btf, function)?;
                attach_kprobe(self.ebpf, program, function.name)?;
                self.links.insert(program, Link::Kept);
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
                self.links.insert(entry, Link::Kept);
                self.links.insert(ret, Link::Kept);
            }
            Attach::BtfTracepoint { program, name } => {
                let btf = kernel_btf(&self.kernel_btf)?;
                let prog: &mut BtfTracePoint = program_of(self.ebpf, program)?;
                prog.load(name, btf).map_err(|e| refusal("load", &e))?;
                match prog.attach() {
                    Ok(link) => self.links.insert(program, Link::Btf(Some(link))),
                    Err(e) => {
                        let _ = prog.unload();
                        return Err(refusal("attach", &e));
                    }
                };
            }
            Attach::RawTracepoint { program, name } => {
                let prog: &mut RawTracePoint = program_of(self.ebpf, program)?;
                prog.load().map_err(|e| refusal("load", &e))?;
                match prog.attach(name) {
                    Ok(link) => self.links.insert(program, Link::Raw(Some(link), name)),
                    Err(e) => {
                        let _ = prog.unload();
                        return Err(refusal("attach", &e));
                    }
                };
            }
            Attach::Tracepoint { program, category, name } => {
                let prog: &mut TracePoint = program_of(self.ebpf, program)?;
                prog.load().map_err(|e| refusal("load", &e))?;
                match prog.attach(category, name) {
                    Ok(link) => self.links.insert(program, Link::Perf(Some(link), category, name)),
                    Err(e) => {
                        let _ = prog.unload();
                        return Err(refusal("attach", &e));
                    }
                };
            }
            Attach::Alongside { .. } => unreachable!("answered above"),
        }
        Ok(attach)
    }
}

/// Attaches (`on`) or detaches a per-packet program; a no-op where it already is so, and for
/// function programs, which stay attached.
pub fn set_attached(ebpf: &mut Ebpf, program: &str, link: &mut Link, on: bool) -> Result<(), String> {
    match link {
        Link::Btf(id) => {
            let prog: &mut BtfTracePoint = program_of(ebpf, program)?;
            match (id.take(), on) {
                (None, true) => *id = Some(prog.attach().map_err(|e| refusal("attach", &e))?),
                (Some(current), false) => prog.detach(current).map_err(|e| refusal("detach", &e))?,
                (current, _) => *id = current,
            }
        }
        Link::Raw(id, name) => {
            let prog: &mut RawTracePoint = program_of(ebpf, program)?;
            match (id.take(), on) {
                (None, true) => *id = Some(prog.attach(name).map_err(|e| refusal("attach", &e))?),
                (Some(current), false) => prog.detach(current).map_err(|e| refusal("detach", &e))?,
                (current, _) => *id = current,
            }
        }
        Link::Perf(id, category, name) => {
            let prog: &mut TracePoint = program_of(ebpf, program)?;
            match (id.take(), on) {
                (None, true) => *id = Some(prog.attach(category, name).map_err(|e| refusal("attach", &e))?),
                (Some(current), false) => prog.detach(current).map_err(|e| refusal("detach", &e))?,
                (current, _) => *id = current,
            }
        }
        Link::Kept => {}
    }
    Ok(())
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

pub fn program_of<'e, T>(ebpf: &'e mut Ebpf, name: &str) -> Result<&'e mut T, String>
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
        assert_eq!(Attach::Kretprobe { entry: "f_entry", ret: "f_ret", function: &F }.programs(), ["f_entry", "f_ret"]);
        assert_eq!(Attach::Fexit { program: "f_fexit", function: &F }.programs(), ["f_fexit"]);
    }
}
