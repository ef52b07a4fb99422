//! The logical hooks netdiag knows and, for each, the programs that can serve it, best first.
use serde::Serialize;

/// Attach mechanisms, in the order they are preferred: fentry/fexit cost least; kprobes work
/// where BPF trampolines are refused; tracepoints are stable but exist for few places.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Fentry,
    Kprobe,
    Tracepoint,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::Fentry, Family::Kprobe, Family::Tracepoint];

    pub fn name(self) -> &'static str {
        match self {
            Family::Fentry => "fentry",
            Family::Kprobe => "kprobe",
            Family::Tracepoint => "tracepoint",
        }
    }
}

/// Which mechanisms a run may use: the best available for each hook, or only one family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    #[default]
    Auto,
    /// fentry and fexit.
    Fentry,
    /// kprobe and kretprobe.
    Kprobe,
    Tracepoint,
    /// Perf-event tracepoints only, their records read field by field: the oldest mechanism,
    /// for a kernel whose BTF-typed and raw tracepoints misbehave, and to test its programs.
    Perf,
}

impl BackendChoice {
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Fentry => "fentry",
            BackendChoice::Kprobe => "kprobe",
            BackendChoice::Tracepoint => "tracepoint",
            BackendChoice::Perf => "perf",
        }
    }

    pub fn allows(self, family: Family) -> bool {
        match self {
            BackendChoice::Auto => true,
            BackendChoice::Fentry => family == Family::Fentry,
            BackendChoice::Kprobe => family == Family::Kprobe,
            BackendChoice::Tracepoint | BackendChoice::Perf => family == Family::Tracepoint,
        }
    }

    /// Whether a candidate of an allowed family may be tried: with `perf`, only perf events
    /// (and hooks served alongside them).
    pub fn allows_attach(self, attach: &Attach) -> bool {
        self != BackendChoice::Perf || matches!(attach, Attach::Tracepoint { .. } | Attach::Alongside { .. })
    }
}

/// A kernel function, with the prototype its programs read arguments by (as
/// [`crate::btf::Btf::func_signature`] renders it): a kernel whose prototype differs is refused.
/// A prototype ending in `, ...)` requires only the parameters before it.
pub struct KernelFunction {
    pub name: &'static str,
    pub signature: &'static str,
}

/// One way to serve a logical hook: programs in the eBPF object and where they attach.
pub enum Attach {
    Fentry {
        program: &'static str,
        function: &'static KernelFunction,
    },
    Fexit {
        program: &'static str,
        function: &'static KernelFunction,
    },
    Kprobe {
        program: &'static str,
        function: &'static KernelFunction,
    },
    /// A kprobe stashes the arguments, the kretprobe reads them with the return value.
    Kretprobe {
        entry: &'static str,
        ret: &'static str,
        function: &'static KernelFunction,
    },
    /// A BTF-typed tracepoint (`tp_btf`): called with the tracepoint's arguments, which the
    /// verifier types, so struct members are read with plain loads.
    BtfTracepoint {
        program: &'static str,
        name: &'static str,
    },
    /// Called by the tracepoint directly with its arguments; no perf buffer in between.
    RawTracepoint {
        program: &'static str,
        name: &'static str,
    },
    Tracepoint {
        program: &'static str,
        category: &'static str,
        name: &'static str,
    },
    /// Served by whatever program serves `hook`, where this kernel lets it (see `Need`).
    Alongside {
        hook: &'static str,
    },
}

impl Attach {
    pub fn family(&self) -> Family {
        match self {
            Attach::Fentry { .. } | Attach::Fexit { .. } => Family::Fentry,
            Attach::Kprobe { .. } | Attach::Kretprobe { .. } => Family::Kprobe,
            Attach::BtfTracepoint { .. }
            | Attach::RawTracepoint { .. }
            | Attach::Tracepoint { .. }
            | Attach::Alongside { .. } => Family::Tracepoint,
        }
    }

    /// The mechanism, as reported in a hook's `backend` and refusals.
    pub fn backend(&self) -> &'static str {
        match self {
            Attach::Fentry { .. } => "fentry",
            Attach::Fexit { .. } => "fexit",
            Attach::Kprobe { .. } => "kprobe",
            Attach::Kretprobe { .. } => "kretprobe",
            Attach::BtfTracepoint { .. } => "tp_btf",
            Attach::RawTracepoint { .. } => "raw_tracepoint",
            Attach::Tracepoint { .. } => "tracepoint",
            // Its candidates are the tracepoint programs of the hook it goes alongside.
            Attach::Alongside { .. } => "tracepoint",
        }
    }

    /// The programs of the eBPF object it loads (a kprobe and a kretprobe for one pair).
    pub fn programs(&self) -> Vec<&'static str> {
        match *self {
            Attach::Kretprobe { entry, ret, .. } => vec![entry, ret],
            Attach::Fentry { program, .. }
            | Attach::Fexit { program, .. }
            | Attach::Kprobe { program, .. }
            | Attach::BtfTracepoint { program, .. }
            | Attach::RawTracepoint { program, .. }
            | Attach::Tracepoint { program, .. } => vec![program],
            Attach::Alongside { .. } => Vec::new(),
        }
    }

    pub fn target(&self) -> String {
        match self {
            Attach::Fentry { function, .. }
            | Attach::Fexit { function, .. }
            | Attach::Kprobe { function, .. }
            | Attach::Kretprobe { function, .. } => function.name.to_string(),
            Attach::BtfTracepoint { name, .. } => format!("tp_btf {name}"),
            Attach::RawTracepoint { name, .. } => format!("raw {name}"),
            Attach::Tracepoint { category, name, .. } => format!("{category}:{name}"),
            Attach::Alongside { hook } => format!("the {hook} program"),
        }
    }

    /// Programs that run for every packet a device receives or sends (not only for drops or
    /// in a slow path): the agent attaches them only while an incident calls for them.
    pub fn per_packet(&self) -> bool {
        self.programs().iter().any(|p| p.starts_with("on_rx") || p.starts_with("on_tx"))
    }
}

/// What a candidate needs of the running kernel besides being attachable, checked before it is
/// tried (see `setup.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Need {
    /// The `sk_buff`, `net_device`, `net` and `sock_common` members every handler reads.
    Packet,
    /// The TIME_WAIT socket members (`paws_time_wait`'s function programs).
    TimeWait,
    /// At least one watched drop reason on this kernel.
    WatchedReasons,
    /// At least one out-of-window drop reason on this kernel.
    OowReasons,
    /// The kernel has `TCP_RFC7323_TW_PAWS` and it is watched.
    TimeWaitReason,
    /// `skb:kfree_skb` carries the drop reason (tracepoints on it).
    DropTracepoint,
    /// The perf tracepoint's record layout (its `format` file), for perf tracepoint programs.
    Record(&'static str, &'static str),
}

pub struct Candidate {
    pub attach: Attach,
    pub needs: &'static [Need],
}

pub struct LogicalHook {
    pub name: &'static str,
    /// What the hook counts, for its status.
    pub counts: &'static str,
    /// Best first; families with no entry have no program yet.
    pub candidates: &'static [Candidate],
}

const TCP_CONN_REQUEST: KernelFunction = KernelFunction {
    name: "tcp_conn_request",
    signature: "int tcp_conn_request(struct request_sock_ops *, struct tcp_request_sock_ops *, \
                struct sock *, struct sk_buff *)",
};

const TCP_MAKE_SYNACK: KernelFunction = KernelFunction {
    name: "tcp_make_synack",
    signature: "struct sk_buff * tcp_make_synack(struct sock *, struct dst_entry *, struct request_sock *, \
                struct tcp_fastopen_cookie *, enum tcp_synack_type, struct sk_buff *)",
};

const TCP_SEND_DUPACK: KernelFunction = KernelFunction {
    name: "tcp_send_dupack",
    signature: "void tcp_send_dupack(struct sock *, struct sk_buff *)",
};

const TCP_OOW_RATE_LIMITED: KernelFunction = KernelFunction {
    name: "tcp_oow_rate_limited",
    signature: "bool tcp_oow_rate_limited(struct net *, struct sk_buff *, int, u32 *)",
};

/// Frees a packet with a drop reason and fires `skb:kfree_skb` (with `sk` as `rx_sk`); 6.11
/// made it the one behind `kfree_skb_reason`, which became an inline wrapper.
const SK_SKB_REASON_DROP: KernelFunction = KernelFunction {
    name: "sk_skb_reason_drop",
    signature: "void sk_skb_reason_drop(struct sock *, struct sk_buff *, enum skb_drop_reason)",
};

/// The same before 6.11.
const KFREE_SKB_REASON: KernelFunction = KernelFunction {
    name: "kfree_skb_reason",
    signature: "void kfree_skb_reason(struct sk_buff *, enum skb_drop_reason)",
};

/// The first three parameters are the same on 6.1, 6.12 and 6.18; 6.10 added `u32 *tw_isn`,
/// 6.16 `enum skb_drop_reason *`.
const TCP_TIMEWAIT_STATE_PROCESS: KernelFunction = KernelFunction {
    name: "tcp_timewait_state_process",
    signature: "enum tcp_tw_status tcp_timewait_state_process(struct inet_timewait_sock *, \
                struct sk_buff *, struct tcphdr *, ...)",
};

const PACKET: &[Need] = &[Need::Packet];

/// The drop programs, best first: the drop function's entry, where the kernel's own verdict and
/// reason arrive whichever check (PAWS established, SYN-RECV, SYN-SENT, TSecr, sequence) made
/// it, then `skb:kfree_skb`, which it fires.
macro_rules! drop_candidates {
    ($reasons:expr) => {
        &[
            Candidate { attach: Attach::Fentry { program: "on_drop_fentry", function: &SK_SKB_REASON_DROP }, needs: &[Need::Packet, $reasons] },
            Candidate { attach: Attach::Fentry { program: "on_drop_legacy_fentry", function: &KFREE_SKB_REASON }, needs: &[Need::Packet, $reasons] },
            Candidate { attach: Attach::Kprobe { program: "on_drop_kprobe", function: &SK_SKB_REASON_DROP }, needs: &[Need::Packet, $reasons] },
            Candidate { attach: Attach::Kprobe { program: "on_drop_legacy_kprobe", function: &KFREE_SKB_REASON }, needs: &[Need::Packet, $reasons] },
            Candidate { attach: Attach::BtfTracepoint { program: "on_drop_btf", name: "kfree_skb" }, needs: &[Need::Packet, $reasons, Need::DropTracepoint] },
            Candidate { attach: Attach::RawTracepoint { program: "on_drop_raw", name: "kfree_skb" }, needs: &[Need::Packet, $reasons, Need::DropTracepoint] },
            Candidate {
                attach: Attach::Tracepoint { program: "on_drop_perf", category: "skb", name: "kfree_skb" },
                needs: &[Need::Packet, $reasons, Need::DropTracepoint, Need::Record("skb", "kfree_skb")],
            },
        ]
    };
}

/// A slow-path function's fentry and kprobe programs, then the receive or transmit programs
/// (per packet) on the device tracepoint `$tracepoint` where the kernel allows neither.
macro_rules! function_then_device {
    ($function:expr, $fentry:literal, $kprobe:literal; $btf:literal, $raw:literal, $perf:literal, $tracepoint:literal) => {
        &[
            Candidate { attach: Attach::Fentry { program: $fentry, function: $function }, needs: PACKET },
            Candidate { attach: Attach::Kprobe { program: $kprobe, function: $function }, needs: PACKET },
            Candidate { attach: Attach::BtfTracepoint { program: $btf, name: $tracepoint }, needs: PACKET },
            Candidate { attach: Attach::RawTracepoint { program: $raw, name: $tracepoint }, needs: PACKET },
            Candidate {
                attach: Attach::Tracepoint { program: $perf, category: "net", name: $tracepoint },
                needs: &[Need::Packet, Need::Record("net", $tracepoint)],
            },
        ]
    };
}

/// SYNs at the listener (with the TIME_WAIT program, for `syn_timestamps`), else as they
/// arrive: `conn_request` and `syn_timestamps` share these programs.
const SYN_CANDIDATES: &[Candidate] = function_then_device!(
    &TCP_CONN_REQUEST, "on_conn_request_fentry", "on_conn_request_kprobe";
    "on_rx_btf", "on_rx_raw", "on_rx_perf", "netif_receive_skb"
);

pub const CATALOGUE: &[LogicalHook] = &[
    LogicalHook {
        name: "conn_request",
        counts: "SYNs per peer, netns and listener port (reaching the listener with fentry/kprobe; as they \
                 arrive on the receive path otherwise)",
        candidates: SYN_CANDIDATES,
    },
    LogicalHook {
        name: "dupack_sent",
        counts: "duplicate ACKs sent, per peer and netns",
        candidates: &[
            Candidate { attach: Attach::Fentry { program: "on_dupack_fentry", function: &TCP_SEND_DUPACK }, needs: PACKET },
            Candidate { attach: Attach::Kprobe { program: "on_dupack_kprobe", function: &TCP_SEND_DUPACK }, needs: PACKET },
        ],
    },
    LogicalHook {
        name: "oow_limiter",
        counts: "out-of-window answers the rate limiter suppressed, per peer and netns",
        candidates: &[
            Candidate { attach: Attach::Fexit { program: "on_oow_limited_fexit", function: &TCP_OOW_RATE_LIMITED }, needs: PACKET },
            Candidate {
                attach: Attach::Kretprobe {
                    entry: "on_oow_limited_kprobe",
                    ret: "on_oow_limited_kretprobe",
                    function: &TCP_OOW_RATE_LIMITED,
                },
                needs: PACKET,
            },
        ],
    },
    LogicalHook {
        name: "paws_checks",
        counts: "watched drops per peer",
        candidates: drop_candidates!(Need::WatchedReasons),
    },
    LogicalHook {
        name: "syn_timestamps",
        counts: "TSval of every SYN, sampled for the timestamp clocks (at the listener and at TIME_WAIT sockets \
                 with fentry/kprobe; as they arrive otherwise)",
        candidates: SYN_CANDIDATES,
    },
    LogicalHook {
        name: "synack_sent",
        counts: "SYN-ACKs sent, per peer, netns and local port",
        // As the stack builds them where function hooks work; else every packet leaving.
        candidates: function_then_device!(
            &TCP_MAKE_SYNACK, "on_synack_fentry", "on_synack_kprobe";
            "on_tx_btf", "on_tx_raw", "on_tx_perf", "net_dev_queue"
        ),
    },
    LogicalHook {
        name: "synack_retransmit",
        counts: "SYN-ACK retransmissions, per peer, netns and local port",
        candidates: &[Candidate {
            attach: Attach::Tracepoint { program: "on_synack_retransmit", category: "tcp", name: "tcp_retransmit_synack" },
            needs: &[Need::Packet, Need::Record("tcp", "tcp_retransmit_synack")],
        }],
    },
    LogicalHook {
        name: "handshake_done",
        counts: "passive handshakes completed (SYN_RECV → ESTABLISHED), per peer, netns and local port",
        candidates: &[Candidate {
            attach: Attach::Tracepoint { program: "on_state_change", category: "sock", name: "inet_sock_set_state" },
            needs: &[Need::Packet, Need::Record("sock", "inet_sock_set_state")],
        }],
    },
    LogicalHook {
        name: "paws_time_wait",
        counts: "PAWS rejections in TIME_WAIT per peer",
        candidates: &[
            Candidate {
                attach: Attach::Fentry { program: "on_timewait_fentry", function: &TCP_TIMEWAIT_STATE_PROCESS },
                needs: &[Need::Packet, Need::TimeWait],
            },
            Candidate {
                attach: Attach::Kprobe { program: "on_timewait_kprobe", function: &TCP_TIMEWAIT_STATE_PROCESS },
                needs: &[Need::Packet, Need::TimeWait],
            },
            // The drop program sees them only where the kernel has the reason (6.16).
            Candidate { attach: Attach::Alongside { hook: "paws_checks" }, needs: &[Need::TimeWaitReason] },
        ],
    },
    LogicalHook {
        name: "oow_received",
        counts: "out-of-window segments received, per flow, by why (timestamp, sequence, ACK)",
        candidates: drop_candidates!(Need::OowReasons),
    },
    LogicalHook {
        name: "flow_dupacks",
        counts: "duplicate ACKs sent, per flow (the stack's answers to out-of-window segments with \
                 fentry/kprobe; pure ACKs repeating the flow's last segment as they leave otherwise)",
        candidates: function_then_device!(
            &TCP_SEND_DUPACK, "on_dupack_fentry", "on_dupack_kprobe";
            "on_tx_btf", "on_tx_raw", "on_tx_perf", "net_dev_queue"
        ),
    },
];

impl LogicalHook {
    /// Hooks that exist only as tracepoints (the SYN funnel's) have nothing to force: they are
    /// served by their tracepoint whatever the backend choice.
    pub fn tracepoints_only(&self) -> bool {
        self.candidates.iter().all(|c| c.attach.family() == Family::Tracepoint)
    }
}

/// The kernel functions the catalogue attaches to.
pub fn functions() -> impl Iterator<Item = &'static KernelFunction> {
    CATALOGUE.iter().flat_map(|hook| hook.candidates).filter_map(|c| match &c.attach {
        Attach::Fentry { function, .. }
        | Attach::Fexit { function, .. }
        | Attach::Kprobe { function, .. }
        | Attach::Kretprobe { function, .. } => Some(*function),
        _ => None,
    })
}

/// The perf tracepoints whose record layouts some candidate needs.
pub fn records() -> impl Iterator<Item = (&'static str, &'static str)> {
    CATALOGUE.iter().flat_map(|hook| hook.candidates).flat_map(|c| c.needs).filter_map(|need| match need {
        Need::Record(category, name) => Some((*category, *name)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_in_preference_order() {
        for hook in CATALOGUE {
            let families: Vec<Family> = hook.candidates.iter().map(|c| c.attach.family()).collect();
            let mut sorted = families.clone();
            sorted.sort_by_key(|f| Family::ALL.iter().position(|x| x == f));
            assert_eq!(families, sorted, "{}", hook.name);
        }
    }

    /// One program per attach point: hooks that share an attach point name the same programs,
    /// so the attacher attaches each once and every packet is parsed once there.
    #[test]
    fn hooks_on_one_attach_point_share_its_programs() {
        let programs = |name: &str| -> Vec<&str> {
            let hook = CATALOGUE.iter().find(|h| h.name == name).unwrap();
            hook.candidates.iter().flat_map(|c| c.attach.programs()).collect()
        };
        assert_eq!(programs("paws_checks"), programs("oow_received"));
        assert_eq!(programs("conn_request"), programs("syn_timestamps"));
        assert_eq!(programs("dupack_sent"), programs("flow_dupacks")[..2]);
        assert_eq!(programs("synack_sent")[2..], programs("flow_dupacks")[2..]);
    }

    #[test]
    fn only_the_receive_and_transmit_programs_run_per_packet() {
        let per_packet: Vec<&str> = CATALOGUE
            .iter()
            .flat_map(|h| h.candidates)
            .filter(|c| c.attach.per_packet())
            .flat_map(|c| c.attach.programs())
            .collect();
        assert!(per_packet.iter().all(|p| p.starts_with("on_rx") || p.starts_with("on_tx")), "{per_packet:?}");
        assert!(!per_packet.is_empty());
    }

    #[test]
    fn a_forced_backend_allows_only_its_family() {
        assert!(Family::ALL.iter().all(|f| BackendChoice::Auto.allows(*f)));
        assert!(BackendChoice::Kprobe.allows(Family::Kprobe));
        assert!(!BackendChoice::Kprobe.allows(Family::Fentry));
        assert!(!BackendChoice::Fentry.allows(Family::Tracepoint));
        let raw = Attach::RawTracepoint { program: "p", name: "kfree_skb" };
        let perf = Attach::Tracepoint { program: "p", category: "skb", name: "kfree_skb" };
        assert!(BackendChoice::Perf.allows(Family::Tracepoint) && !BackendChoice::Perf.allows(Family::Kprobe));
        assert!(BackendChoice::Perf.allows_attach(&perf) && !BackendChoice::Perf.allows_attach(&raw));
        assert!(BackendChoice::Tracepoint.allows_attach(&raw));
    }
}
