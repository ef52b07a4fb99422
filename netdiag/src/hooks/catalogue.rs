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
}

impl BackendChoice {
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Fentry => "fentry",
            BackendChoice::Kprobe => "kprobe",
            BackendChoice::Tracepoint => "tracepoint",
        }
    }

    pub fn allows(self, family: Family) -> bool {
        match self {
            BackendChoice::Auto => true,
            BackendChoice::Fentry => family == Family::Fentry,
            BackendChoice::Kprobe => family == Family::Kprobe,
            BackendChoice::Tracepoint => family == Family::Tracepoint,
        }
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
    Tracepoint {
        program: &'static str,
        category: &'static str,
        name: &'static str,
    },
    /// Called by the tracepoint directly with its arguments; no perf buffer in between.
    RawTracepoint {
        program: &'static str,
        name: &'static str,
    },
}

impl Attach {
    pub fn family(&self) -> Family {
        match self {
            Attach::Fentry { .. } | Attach::Fexit { .. } => Family::Fentry,
            Attach::Kprobe { .. } | Attach::Kretprobe { .. } => Family::Kprobe,
            Attach::Tracepoint { .. } | Attach::RawTracepoint { .. } => Family::Tracepoint,
        }
    }

    /// The mechanism, as reported in a hook's `backend` and refusals.
    pub fn backend(&self) -> &'static str {
        match self {
            Attach::Fentry { .. } => "fentry",
            Attach::Fexit { .. } => "fexit",
            Attach::Kprobe { .. } => "kprobe",
            Attach::Kretprobe { .. } => "kretprobe",
            Attach::Tracepoint { .. } => "tracepoint",
            Attach::RawTracepoint { .. } => "raw_tracepoint",
        }
    }

    /// The program that runs first (a kretprobe's entry half).
    pub fn program(&self) -> &'static str {
        match self {
            Attach::Fentry { program, .. } | Attach::Fexit { program, .. } | Attach::Kprobe { program, .. } => program,
            Attach::Kretprobe { entry, .. } => entry,
            Attach::Tracepoint { program, .. } | Attach::RawTracepoint { program, .. } => program,
        }
    }

    pub fn target(&self) -> String {
        match self {
            Attach::Fentry { function, .. }
            | Attach::Fexit { function, .. }
            | Attach::Kprobe { function, .. }
            | Attach::Kretprobe { function, .. } => function.name.to_string(),
            Attach::Tracepoint { category, name, .. } => format!("{category}:{name}"),
            Attach::RawTracepoint { name, .. } => format!("raw {name}"),
        }
    }
}

/// The load-time configuration a hook's programs read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// `FunctionProbeConfig`: socket and sk_buff offsets.
    FunctionOffsets,
    /// `DropProbeConfig`: tracepoint record offsets and the watched drop reasons.
    DropReasons,
    /// `HandshakeProbeConfig`: record offsets of the SYN funnel's tracepoints.
    Handshake,
    /// `paws_time_wait`: `FunctionProbeConfig` with the TIME_WAIT socket offsets for its
    /// function programs; for its tracepoint, `kfree_skb` watching `TCP_RFC7323_TW_PAWS`.
    TimeWait,
    /// `FlowProbeConfig` offsets for `net:net_dev_queue`.
    FlowEgress,
    /// `DropProbeConfig` record offsets and `FlowProbeConfig`'s out-of-window reasons.
    FlowDrops,
}

pub struct LogicalHook {
    pub name: &'static str,
    /// What the hook counts, for its status.
    pub counts: &'static str,
    pub setup: Setup,
    /// Best first; families with no entry have no program yet.
    pub candidates: &'static [Attach],
}

const TCP_CONN_REQUEST: KernelFunction = KernelFunction {
    name: "tcp_conn_request",
    signature: "int tcp_conn_request(struct request_sock_ops *, struct tcp_request_sock_ops *, \
                struct sock *, struct sk_buff *)",
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

pub const CATALOGUE: &[LogicalHook] = &[
    LogicalHook {
        name: "conn_request",
        counts: "SYNs per peer, netns and listener port (reaching the listener with fentry/kprobe; as they \
                 arrive with the tracepoint)",
        setup: Setup::FunctionOffsets,
        candidates: &[
            Attach::Fentry { program: "conn_request_fentry", function: &TCP_CONN_REQUEST },
            Attach::Kprobe { program: "conn_request_kprobe", function: &TCP_CONN_REQUEST },
            // Every SYN as it arrives, counted in the SYN funnel (kept for ports with a listener)
            // by the program that samples them for syn_timestamps.
            Attach::RawTracepoint { program: "syn_arrivals_raw", name: "netif_receive_skb" },
            Attach::Tracepoint { program: "syn_arrivals", category: "net", name: "netif_receive_skb" },
        ],
    },
    LogicalHook {
        name: "dupack_sent",
        counts: "duplicate ACKs sent, per peer and netns",
        setup: Setup::FunctionOffsets,
        candidates: &[
            Attach::Fentry { program: "dupack_sent_fentry", function: &TCP_SEND_DUPACK },
            Attach::Kprobe { program: "dupack_sent_kprobe", function: &TCP_SEND_DUPACK },
        ],
    },
    LogicalHook {
        name: "oow_limiter",
        counts: "out-of-window answers the rate limiter suppressed, per peer and netns",
        setup: Setup::FunctionOffsets,
        candidates: &[
            Attach::Fexit { program: "oow_limiter_fexit", function: &TCP_OOW_RATE_LIMITED },
            Attach::Kretprobe {
                entry: "oow_limiter_kprobe",
                ret: "oow_limiter_kretprobe",
                function: &TCP_OOW_RATE_LIMITED,
            },
        ],
    },
    LogicalHook {
        name: "paws_checks",
        counts: "watched drops per peer",
        setup: Setup::DropReasons,
        // The drop function, where the tracepoint fires: the kernel's own verdict and reason,
        // whichever check (PAWS established, SYN-RECV, SYN-SENT, TSecr) made it.
        candidates: &[
            Attach::Fentry { program: "drop_reason_fentry", function: &SK_SKB_REASON_DROP },
            Attach::Fentry { program: "drop_reason_legacy_fentry", function: &KFREE_SKB_REASON },
            Attach::Kprobe { program: "drop_reason_kprobe", function: &SK_SKB_REASON_DROP },
            Attach::Kprobe { program: "drop_reason_legacy_kprobe", function: &KFREE_SKB_REASON },
            Attach::RawTracepoint { program: "kfree_skb_raw", name: "kfree_skb" },
            Attach::Tracepoint { program: "kfree_skb", category: "skb", name: "kfree_skb" },
        ],
    },
    LogicalHook {
        name: "syn_timestamps",
        counts: "TSval of every arriving SYN, sampled for the timestamp clocks",
        setup: Setup::Handshake,
        candidates: &[
            Attach::RawTracepoint { program: "syn_arrivals_raw", name: "netif_receive_skb" },
            Attach::Tracepoint { program: "syn_arrivals", category: "net", name: "netif_receive_skb" },
        ],
    },
    LogicalHook {
        name: "synack_sent",
        counts: "SYN-ACKs sent, per peer, netns and local port",
        setup: Setup::Handshake,
        candidates: &[
            Attach::RawTracepoint { program: "synack_sent_raw", name: "net_dev_queue" },
            Attach::Tracepoint { program: "synack_sent", category: "net", name: "net_dev_queue" },
        ],
    },
    LogicalHook {
        name: "synack_retransmit",
        counts: "SYN-ACK retransmissions, per peer, netns and local port",
        setup: Setup::Handshake,
        candidates: &[Attach::Tracepoint {
            program: "synack_retransmitted",
            category: "tcp",
            name: "tcp_retransmit_synack",
        }],
    },
    LogicalHook {
        name: "handshake_done",
        counts: "passive handshakes completed (SYN_RECV → ESTABLISHED), per peer, netns and local port",
        setup: Setup::Handshake,
        candidates: &[Attach::Tracepoint {
            program: "handshake_done",
            category: "sock",
            name: "inet_sock_set_state",
        }],
    },
    LogicalHook {
        name: "paws_time_wait",
        counts: "PAWS rejections in TIME_WAIT per peer",
        setup: Setup::TimeWait,
        candidates: &[
            Attach::Fentry { program: "paws_time_wait_fentry", function: &TCP_TIMEWAIT_STATE_PROCESS },
            Attach::Kprobe { program: "paws_time_wait_kprobe", function: &TCP_TIMEWAIT_STATE_PROCESS },
            // The paws_checks program (or the function program serving paws_checks); it sees
            // them only where the kernel has the reason (6.16).
            Attach::Tracepoint { program: "kfree_skb", category: "skb", name: "kfree_skb" },
        ],
    },
    LogicalHook {
        name: "oow_received",
        counts: "out-of-window segments received, per flow, by why (timestamp, sequence, ACK)",
        setup: Setup::FlowDrops,
        candidates: &[
            Attach::Fentry { program: "oow_received_fentry", function: &SK_SKB_REASON_DROP },
            Attach::Fentry { program: "oow_received_legacy_fentry", function: &KFREE_SKB_REASON },
            Attach::Kprobe { program: "oow_received_kprobe", function: &SK_SKB_REASON_DROP },
            Attach::Kprobe { program: "oow_received_legacy_kprobe", function: &KFREE_SKB_REASON },
            Attach::RawTracepoint { program: "oow_received_raw", name: "kfree_skb" },
            Attach::Tracepoint { program: "oow_received", category: "skb", name: "kfree_skb" },
        ],
    },
    LogicalHook {
        name: "flow_dupacks",
        counts: "duplicate ACKs sent, per flow (the stack's answers to out-of-window segments with \
                 fentry/kprobe; pure ACKs repeating the flow's last segment as they leave with the tracepoint)",
        setup: Setup::FlowEgress,
        candidates: &[
            Attach::Fentry { program: "flow_dupack_fentry", function: &TCP_SEND_DUPACK },
            Attach::Kprobe { program: "flow_dupack_kprobe", function: &TCP_SEND_DUPACK },
            Attach::RawTracepoint { program: "flow_egress_raw", name: "net_dev_queue" },
            Attach::Tracepoint { program: "flow_egress", category: "net", name: "net_dev_queue" },
        ],
    },
];

/// Programs whose configuration differs from their hook's: a tracepoint standing in for a
/// function hook reads tracepoint records, not the function's arguments.
const OWN_SETUP: &[(&str, Setup)] = &[
    ("syn_arrivals_raw", Setup::Handshake),
    ("syn_arrivals", Setup::Handshake),
    ("flow_dupack_fentry", Setup::FunctionOffsets),
    ("flow_dupack_kprobe", Setup::FunctionOffsets),
];

/// The configuration `attach` reads when it serves `hook`.
pub fn setup_of(hook: &LogicalHook, attach: &Attach) -> Setup {
    let program = attach.program();
    OWN_SETUP.iter().find(|(name, _)| *name == program).map_or(hook.setup, |(_, setup)| *setup)
}

impl LogicalHook {
    /// Hooks that exist only as tracepoints (the SYN funnel's) have nothing to force: they are
    /// served by their tracepoint whatever the backend choice.
    pub fn tracepoints_only(&self) -> bool {
        self.candidates.iter().all(|attach| attach.family() == Family::Tracepoint)
    }
}

/// The kernel functions the catalogue attaches to.
pub fn functions() -> impl Iterator<Item = &'static KernelFunction> {
    CATALOGUE.iter().flat_map(|hook| hook.candidates).filter_map(|attach| match attach {
        Attach::Fentry { function, .. }
        | Attach::Fexit { function, .. }
        | Attach::Kprobe { function, .. }
        | Attach::Kretprobe { function, .. } => Some(*function),
        Attach::Tracepoint { .. } | Attach::RawTracepoint { .. } => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_in_preference_order() {
        for hook in CATALOGUE {
            let families: Vec<Family> = hook.candidates.iter().map(Attach::family).collect();
            let mut sorted = families.clone();
            sorted.sort_by_key(|f| Family::ALL.iter().position(|x| x == f));
            assert_eq!(families, sorted, "{}", hook.name);
        }
    }

    #[test]
    fn the_tracepoint_conn_request_reads_the_handshake_configuration() {
        let hook = CATALOGUE.iter().find(|h| h.name == "conn_request").unwrap();
        let setups: Vec<Setup> = hook.candidates.iter().map(|a| setup_of(hook, a)).collect();
        assert_eq!(setups, [Setup::FunctionOffsets, Setup::FunctionOffsets, Setup::Handshake, Setup::Handshake]);
    }

    /// One program parses each arriving packet for both hooks (the attacher attaches it once).
    #[test]
    fn conn_request_and_syn_timestamps_share_their_tracepoint_programs() {
        let tracepoint_programs = |name: &str| -> Vec<&str> {
            let hook = CATALOGUE.iter().find(|h| h.name == name).unwrap();
            hook.candidates.iter().filter(|a| a.family() == Family::Tracepoint).map(Attach::program).collect()
        };
        assert_eq!(tracepoint_programs("conn_request"), ["syn_arrivals_raw", "syn_arrivals"]);
        assert_eq!(tracepoint_programs("syn_timestamps"), tracepoint_programs("conn_request"));
    }

    #[test]
    fn a_forced_backend_allows_only_its_family() {
        assert!(Family::ALL.iter().all(|f| BackendChoice::Auto.allows(*f)));
        assert!(BackendChoice::Kprobe.allows(Family::Kprobe));
        assert!(!BackendChoice::Kprobe.allows(Family::Fentry));
        assert!(!BackendChoice::Fentry.allows(Family::Tracepoint));
    }
}
