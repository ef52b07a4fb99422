//! What netdiag knows about TCP counters, drop reasons and its own findings: one table that
//! `explain` prints in full and `counters` uses for its one-line meanings and groups.
//!
//! Facts come from the kernel's `Documentation/networking/snmp_counter.rst`, the kernel
//! changes that added the newer counters and drop reasons, and the incidents netdiag was
//! written for (an ACK storm between two hosts; SYNs from clients behind one NAT left
//! unanswered). The wording is netdiag's own.
use serde::Serialize;

/// What a counter is about, in the order `counters` prints the groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    Paws,
    OutOfWindow,
    SynListen,
    Resets,
    Retransmits,
    Other,
}

impl Group {
    pub fn title(self) -> &'static str {
        match self {
            Group::Paws => "PAWS / timestamps",
            Group::OutOfWindow => "Out of window & skipped ACKs",
            Group::SynListen => "SYN & listen queues",
            Group::Resets => "Resets",
            Group::Retransmits => "Retransmits",
            Group::Other => "Other",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A kernel counter as `nstat` names it.
    Counter,
    /// An `enum skb_drop_reason` value without its `SKB_DROP_REASON_` prefix.
    DropReason,
    /// A finding kind of `netdiag diagnose`.
    Finding,
}

impl Kind {
    pub fn title(self) -> &'static str {
        match self {
            Kind::Counter => "kernel counter (nstat)",
            Kind::DropReason => "drop reason (skb:kfree_skb)",
            Kind::Finding => "netdiag finding",
        }
    }
}

#[derive(Debug)]
pub struct Entry {
    pub name: &'static str,
    pub kind: Kind,
    pub group: Group,
    /// One line, as `counters` prints it beside a delta.
    pub meaning: &'static str,
    /// The rest of `explain`; None for counters netdiag only labels.
    pub detail: Option<Detail>,
}

#[derive(Debug)]
pub struct Detail {
    pub causes: &'static str,
    /// Which hook, drop reason or counter netdiag reads to tie it to a peer.
    pub attribution: &'static str,
    pub action: &'static str,
    /// Findings: what netdiag must have seen before it reports one, and what proves nothing
    /// (the README's "What each kind requires"); None for counters and drop reasons.
    pub requires: Option<&'static str>,
    /// Names of other entries worth reading next.
    pub related: &'static [&'static str],
}

/// Meaning printed for a counter the table does not describe.
pub const UNDESCRIBED: &str =
    "Not described by netdiag yet; see the kernel's Documentation/networking/snmp_counter.rst.";

const fn counter(name: &'static str, group: Group, meaning: &'static str) -> Entry {
    Entry { name, kind: Kind::Counter, group, meaning, detail: None }
}

pub static ENTRIES: &[Entry] = &[
    // ---- PAWS / timestamps -------------------------------------------------------------
    Entry {
        name: "TcpExtPAWSEstab",
        kind: Kind::Counter,
        group: Group::Paws,
        meaning: "Segments dropped because their timestamp was older than the newest one already accepted \
                  on that connection (PAWS).",
        detail: Some(Detail {
            causes: "PAWS (RFC 7323) lets a receiver refuse a segment whose TSval is behind the last one it \
                     accepted on the same connection, as an old duplicate. Genuine old duplicates are rare: in \
                     practice this climbs when the timestamps themselves are wrong. A middlebox rewrites or \
                     replays them, several hosts share one address and 4-tuple (NAT, load-balancer failover), \
                     or a peer's timestamp clock jumped back. It also counts handshake segments refused by a \
                     half-open (SYN_RECV) request. Each rejected segment is answered with a duplicate ACK \
                     unless the limiter skips it (TcpExtTCPACKSkippedPAWS); if the peer rejects that ACK in \
                     turn, the two hosts can loop. Since Linux 6.14 late pure ACKs are counted in \
                     TcpExtPAWSOldAck instead, and since 6.16 TIME_WAIT rejections in TcpExtPAWSTimewait; \
                     older kernels count both here.",
            attribution: "`netdiag diagnose` counts every drop with reason TCP_RFC7323_PAWS on the skb:kfree_skb \
                          tracepoint per peer address and namespace, split by the state of the socket that \
                          dropped it, and prints this counter's delta next to what it attributed.",
            action: "Name the peer with `netdiag diagnose`. Then capture on both ends (`tcpdump -n 'host PEER \
                     and tcp'`) and compare TSval hop by hop to find who changes it; if several hosts share the \
                     peer's address, read nat_timestamp_clocks. Keep net.ipv4.tcp_invalid_ratelimit above 0 so \
                     a disagreement cannot become an ACK storm. net.ipv4.tcp_timestamps=0 stops the drops but \
                     loses RTT precision and wrapped-sequence protection: a stopgap, not a fix.",
            requires: None,
            related: &[
                "TCP_RFC7323_PAWS",
                "TcpExtTCPACKSkippedPAWS",
                "TcpExtPAWSOldAck",
                "paws_rejections",
                "ack_loop",
            ],
        }),
    },
    Entry {
        name: "TcpExtPAWSActive",
        kind: Kind::Counter,
        group: Group::Paws,
        meaning: "SYN-ACKs refused during this host's own connects (SYN-SENT): their timestamp echo matches \
                  none of its SYNs.",
        detail: Some(Detail {
            causes: "The SYN-ACK echoes (TSecr) a timestamp outside the range of the SYNs this connection sent. \
                     Usually a device in the path rewrites timestamps (SYN proxy, NAT, load balancer) or answers \
                     for the server from stale state; rarely a stray SYN-ACK of an older attempt on the same \
                     4-tuple. The kernel answers with a reset and retries its SYN, so the application sees slow \
                     or failing connects to that server.",
            attribution: "Drops with reason TCP_RFC7323_PAWS from a socket in SYN-SENT; `netdiag diagnose` \
                          reports them as paws_rejections with variant syn_sent, naming the remote server.",
            action: "Capture the handshake and compare our SYN's TSval with the SYN-ACK's TSecr. If they \
                     differ, find the device between the hosts that rewrites them and fix or bypass it.",
            requires: None,
            related: &["TCP_RFC7323_PAWS", "paws_rejections"],
        }),
    },
    Entry {
        name: "TcpExtPAWSTimewait",
        kind: Kind::Counter,
        group: Group::Paws,
        meaning: "Segments, mostly reconnecting SYNs, that a TIME_WAIT socket refused: timestamp older than the \
                  last connection's.",
        detail: Some(Detail {
            causes: "The side that closes a connection first keeps its 4-tuple in TIME_WAIT for 60 s, together \
                     with the peer's last TSval. A new SYN on that 4-tuple may reuse it early only if its \
                     timestamp is newer; an older one is dropped and answered with an ACK of the old connection \
                     instead of a SYN-ACK. The classic cause is several clients behind one NAT address: their \
                     clocks differ, and the one whose clock is behind cannot reconnect on a port the server \
                     still holds. By default (net.ipv4.tcp_rfc1337=0) the client's RST to that ACK clears the \
                     TIME_WAIT and its retry gets through a second later; with 1 every retry is refused until \
                     the TIME_WAIT ends, and the client times out. Kernels before 6.16 count these in \
                     TcpExtPAWSEstab.",
            attribution: "`netdiag diagnose` counts drops with reason TCP_RFC7323_TW_PAWS per peer and namespace \
                          (paws_rejections, variant time_wait) and reconciles them with this counter.",
            action: "Find out whether the peer is a NAT or load balancer (nat_timestamp_clocks). Let clients \
                     close first or keep connections alive, so the server does not hold TIME_WAIT for their \
                     4-tuples; a NAT with more addresses or a wider port range reuses a 4-tuple less often.",
            requires: None,
            related: &["TCP_RFC7323_TW_PAWS", "TcpExtTCPACKSkippedTimeWait", "nat_timestamp_clocks", "unanswered_syns"],
        }),
    },
    Entry {
        name: "TcpExtPAWSOldAck",
        kind: Kind::Counter,
        group: Group::Paws,
        meaning: "Pure ACKs that arrived after newer data of the same connection and failed PAWS; harmless \
                  reordering, left unanswered.",
        detail: Some(Detail {
            causes: "The peer sent an ACK and then data, but they left through different transmit queues or \
                     paths and the data arrived first, so the late ACK's timestamp is behind. Nothing is lost. \
                     Linux 6.14 and later count these here instead of TcpExtPAWSEstab and no longer send a \
                     duplicate ACK for them. A steady trickle is normal between busy multi-queue hosts.",
            attribution: "Drops with reason TCP_RFC7323_PAWS_ACK; `netdiag diagnose` includes them in \
                          paws_rejections (variant established) and reconciles them with this counter.",
            action: "Usually nothing. Look further only if TcpExtPAWSEstab rises along with it.",
            requires: None,
            related: &["TCP_RFC7323_PAWS_ACK", "TcpExtPAWSEstab"],
        }),
    },
    Entry {
        name: "TcpExtTSEcrRejected",
        kind: Kind::Counter,
        group: Group::Paws,
        meaning: "Handshake-completing ACKs refused because they echo (TSecr) a timestamp this host never sent.",
        detail: Some(Detail {
            causes: "When the last ACK of a three-way handshake arrives, recent kernels check that its \
                     timestamp echo matches a SYN-ACK they sent for that request. A mismatch means a device in \
                     between rewrites timestamps, the ACK belongs to another attempt on the same 4-tuple, or \
                     someone completes handshakes blindly with forged packets. The connection does not open on \
                     this side, although the client may believe it did.",
            attribution: "Drops with reason TCP_RFC7323_TSECR; `netdiag diagnose` reports them as \
                          paws_rejections with variant tsecr, naming the peer.",
            action: "Capture both sides of a failing handshake and compare the SYN-ACK's TSval with the ACK's \
                     TSecr; the hop where they diverge is the culprit (SYN proxies, NATs and load balancers \
                     that rewrite timestamps first).",
            requires: None,
            related: &["TCP_RFC7323_TSECR", "TcpExtTCPACKSkippedSynRecv", "paws_rejections"],
        }),
    },
    // ---- Out of window & skipped ACKs ---------------------------------------------------
    Entry {
        name: "TcpExtBeyondWindow",
        kind: Kind::Counter,
        group: Group::OutOfWindow,
        meaning: "Segments dropped because their sequence numbers lie beyond the receive window (Linux 6.17+).",
        detail: Some(Detail {
            causes: "The peer sent past what this host advertised: a sender ignoring the window, a middlebox \
                     that shifted sequence numbers or lost the flow's state after a failover, segments of \
                     another connection on the same 4-tuple, or injected packets. Each is answered with a \
                     duplicate ACK unless the limiter skips it (TcpExtTCPACKSkippedSeq).",
            attribution: "Drops with reason TCP_INVALID_SEQUENCE or TCP_INVALID_END_SEQUENCE on skb:kfree_skb, \
                          which netdiag keys per peer and namespace (finding out_of_window_flood).",
            action: "Name the peer, then capture both ends and compare sequence numbers and windows; suspect \
                     sequence-rewriting firewalls and load-balancer failovers first.",
            requires: None,
            related: &["TCP_INVALID_SEQUENCE", "TcpExtTCPACKSkippedSeq", "out_of_window_flood"],
        }),
    },
    Entry {
        name: "TcpExtTCPACKSkippedSynRecv",
        kind: Kind::Counter,
        group: Group::OutOfWindow,
        meaning: "Replies to invalid segments on half-open (SYN-RECV) connections suppressed by \
                  tcp_invalid_ratelimit.",
        detail: Some(Detail {
            causes: "A half-open request answers repeated SYNs, segments failing PAWS and out-of-window \
                     segments with an ACK. When they come faster than net.ipv4.tcp_invalid_ratelimit allows \
                     (one reply per connection per interval, 500 ms by default), the reply is skipped and \
                     counted here. Sources: a client resending its SYN aggressively, replayed or spoofed SYNs, \
                     or timestamp trouble during handshakes (TcpExtTSEcrRejected).",
            attribution: "A skipped reply is not a drop. netdiag names the peers through the drops that caused \
                          it (TCP_RFC7323_PAWS or TCP_RFC7323_TSECR from a SYN_RECV socket); the counter shows \
                          the limiter at work.",
            action: "A few are fine: the limiter is doing its job. If it climbs steadily, find the peer with \
                     `netdiag diagnose`.",
            requires: None,
            related: &["TcpExtTSEcrRejected", "TCP_RFC7323_TSECR", "ack_loop"],
        }),
    },
    Entry {
        name: "TcpExtTCPACKSkippedPAWS",
        kind: Kind::Counter,
        group: Group::OutOfWindow,
        meaning: "Duplicate ACKs for segments that failed PAWS, suppressed by tcp_invalid_ratelimit.",
        detail: Some(Detail {
            causes: "The same events as TcpExtPAWSEstab, arriving on one connection faster than the limiter \
                     lets replies through (half-open, FIN-WAIT-2 and TIME_WAIT sockets have counters of their \
                     own). A stream of stale-timestamp segments on one connection is what an \
                     ACK loop looks like from one side; the limiter is what keeps it from running at line \
                     rate.",
            attribution: "Not a drop itself: the PAWS drops behind it (TCP_RFC7323_PAWS) are attributed per \
                          peer. Skips close to the PAWSEstab count mean the rejections came in bursts on single \
                          connections.",
            action: "Name the peer with `netdiag diagnose` and read ack_loop; keep \
                     net.ipv4.tcp_invalid_ratelimit above 0.",
            requires: None,
            related: &["TcpExtPAWSEstab", "TCP_RFC7323_PAWS", "ack_loop"],
        }),
    },
    Entry {
        name: "TcpExtTCPACKSkippedSeq",
        kind: Kind::Counter,
        group: Group::OutOfWindow,
        meaning: "Duplicate ACKs for out-of-window segments (timestamps fine) suppressed by tcp_invalid_ratelimit.",
        detail: Some(Detail {
            causes: "A connection keeps receiving segments whose sequence numbers do not fit its receive window: \
                     old duplicates, a peer or middlebox that lost track of the connection, a firewall that \
                     shifts sequence numbers, or injection attempts. Each would earn a duplicate ACK; past the \
                     limit the ACK is skipped. Two hosts that disagree about sequence numbers would otherwise \
                     answer each other forever.",
            attribution: "Behind it are drops with reason TCP_INVALID_SEQUENCE, TCP_INVALID_END_SEQUENCE (both \
                          also in TcpExtBeyondWindow) or TCP_OLD_SEQUENCE, which netdiag keys per peer (finding \
                          out_of_window_flood).",
            action: "Find the peer, capture both ends and compare sequence numbers; look for a firewall or load \
                     balancer that rewrites them or lost the flow's state.",
            requires: None,
            related: &[
                "TcpExtBeyondWindow",
                "TCP_INVALID_SEQUENCE",
                "TCP_OLD_SEQUENCE",
                "out_of_window_flood",
                "ack_loop",
            ],
        }),
    },
    Entry {
        name: "TcpExtTCPACKSkippedFinWait2",
        kind: Kind::Counter,
        group: Group::OutOfWindow,
        meaning: "Replies to invalid segments on FIN-WAIT-2 connections suppressed by tcp_invalid_ratelimit.",
        detail: Some(Detail {
            causes: "This side has closed and waits for the peer's FIN, while the peer keeps sending segments \
                     that do not fit (stale timestamps or sequence numbers), often because it or a middlebox \
                     lost track of the closing connection.",
            attribution: "Not a drop; the invalid segments behind it are dropped with PAWS or sequence reasons, \
                          which netdiag attributes per peer.",
            action: "Usually a side effect of a misbehaving peer during close; if it keeps rising, name the peer \
                     and capture the close sequence.",
            requires: None,
            related: &["TcpExtTCPACKSkippedTimeWait", "TcpExtTCPACKSkippedSeq"],
        }),
    },
    Entry {
        name: "TcpExtTCPACKSkippedTimeWait",
        kind: Kind::Counter,
        group: Group::OutOfWindow,
        meaning: "Replies to invalid segments reaching TIME_WAIT sockets suppressed by tcp_invalid_ratelimit.",
        detail: Some(Detail {
            causes: "Segments keep arriving for a 4-tuple this host holds in TIME_WAIT: late retransmissions of \
                     the old connection or, most often, new SYNs from a host behind the same NAT address whose \
                     timestamp clock is behind (TcpExtPAWSTimewait). The TIME_WAIT socket answers each with an \
                     ACK of the old connection, up to the limit.",
            attribution: "The PAWS part is attributed through TCP_RFC7323_TW_PAWS drops (paws_rejections, \
                          variant time_wait).",
            action: "Read TcpExtPAWSTimewait and nat_timestamp_clocks.",
            requires: None,
            related: &["TcpExtPAWSTimewait", "TCP_RFC7323_TW_PAWS", "nat_timestamp_clocks"],
        }),
    },
    Entry {
        name: "TcpExtTCPACKSkippedChallenge",
        kind: Kind::Counter,
        group: Group::OutOfWindow,
        meaning: "Challenge ACKs (RFC 5961) not sent because the connection had just replied to another invalid \
                  segment.",
        detail: Some(Detail {
            causes: "RFC 5961 has a receiver answer a suspicious segment (an RST or SYN whose sequence is in the \
                     window but not exact, an ACK for data never sent) with a challenge ACK, so a genuine peer \
                     can resynchronise and a blind attacker cannot. Challenges coming faster than the \
                     per-connection limiter allows are skipped. Many of them point to injection attempts or to a \
                     peer and a middlebox disagreeing about the connection.",
            attribution: "Not a drop; the triggering segments are dropped with reasons such as TCP_RESET or \
                          TCP_INVALID_SYN, which netdiag's drop probe can key per peer like the others.",
            action: "Compare with TcpExtTCPChallengeACK; capture to see whether the RSTs and SYNs come from the \
                     real peer (a restarted or confused stack) or from elsewhere (spoofing).",
            requires: None,
            related: &["TcpExtTCPChallengeACK", "TcpExtTCPSYNChallenge"],
        }),
    },
    Entry {
        name: "TcpExtTCPChallengeACK",
        kind: Kind::Counter,
        group: Group::OutOfWindow,
        meaning: "Challenge ACKs sent (RFC 5961) in reply to suspicious RSTs, SYNs or ACKs on existing \
                  connections.",
        detail: Some(Detail {
            causes: "An in-window RST whose sequence is not exactly the expected one, a SYN on an established \
                     connection, or an ACK for data never sent. A genuine peer answers the challenge and the \
                     connection recovers or is reset cleanly; a blind attacker cannot. Sources: peers that \
                     restarted without closing (their new SYN meets the old connection), NAT port reuse, \
                     middleboxes that lost state, spoofed resets.",
            attribution: "Counter only; the triggering segments appear on skb:kfree_skb with reasons such as \
                          TCP_RESET or TCP_INVALID_SYN.",
            action: "Check TcpExtTCPSYNChallenge for the SYN-triggered share. A burst after a peer reboots is \
                     normal; a steady flow from many sources suggests spoofed resets: capture to tell.",
            requires: None,
            related: &["TcpExtTCPSYNChallenge", "TcpExtTCPACKSkippedChallenge"],
        }),
    },
    counter(
        "TcpExtTCPSYNChallenge",
        Group::OutOfWindow,
        "SYNs on established connections answered with a challenge ACK.",
    ),
    counter(
        "TcpExtOutOfWindowIcmps",
        Group::OutOfWindow,
        "ICMP errors ignored because the TCP sequence they quote is outside the connection's window (stale or forged).",
    ),
    // ---- SYN & listen queues ------------------------------------------------------------
    Entry {
        name: "TcpExtListenOverflows",
        kind: Kind::Counter,
        group: Group::SynListen,
        meaning: "Connection attempts refused because a listener's accept queue was full (the application \
                  accepts too slowly).",
        detail: Some(Detail {
            causes: "A listening socket keeps completed connections until the application accepts them, up to \
                     its backlog (the listen() argument, capped by net.core.somaxconn). With the queue full, \
                     the kernel drops new SYNs and also the ACKs that would complete handshakes, and counts \
                     both here and in TcpExtListenDrops. Clients retransmit, so users see connects that take \
                     1, 3, 7 seconds or time out. Causes: an application stalled or too slow to accept, a \
                     backlog set too small, a burst of connections.",
            attribution: "`netdiag check` lists listeners whose accept queue is full or nearly so right now. \
                          Handshake-completing ACKs dropped at a full queue carry reason TCP_LISTEN_OVERFLOW \
                          (Linux 6.15+) and can be tied to a peer; refused SYNs are not all reported with that \
                          reason, so this counter stays the total.",
            action: "Find the listener (`netdiag check`, or `ss -ltn`: Recv-Q against Send-Q), make the \
                     application accept faster, and raise its listen() backlog together with \
                     net.core.somaxconn.",
            requires: None,
            related: &["TcpExtListenDrops", "TCP_LISTEN_OVERFLOW", "unanswered_syns"],
        }),
    },
    Entry {
        name: "TcpExtListenDrops",
        kind: Kind::Counter,
        group: Group::SynListen,
        meaning: "Segments a listening socket had to drop for any reason; includes every ListenOverflows event.",
        detail: Some(Detail {
            causes: "It rises with TcpExtListenOverflows when the accept queue is full, and on its own for other \
                     failures while answering a SYN or creating the accepted socket: memory pressure, a SYN \
                     queue full with SYN cookies off (TcpExtTCPReqQFullDrop), allocation failures. Drops minus \
                     overflows is the share a full accept queue does not explain.",
            attribution: "Counter only, apart from the TCP_LISTEN_OVERFLOW drops (see TcpExtListenOverflows).",
            action: "If it equals ListenOverflows, treat it as an accept-queue problem. If it is larger, check \
                     TcpExtTCPReqQFullDrop, net.ipv4.tcp_syncookies (`netdiag check`) and memory pressure \
                     (TcpExtTCPMemoryPressures).",
            requires: None,
            related: &["TcpExtListenOverflows", "TcpExtTCPReqQFullDrop", "TcpExtSyncookiesSent"],
        }),
    },
    Entry {
        name: "TcpExtSyncookiesSent",
        kind: Kind::Counter,
        group: Group::SynListen,
        meaning: "SYNs answered with a SYN cookie instead of being queued, because a listener's SYN queue was \
                  full (or tcp_syncookies=2).",
        detail: Some(Detail {
            causes: "A listener keeps half-open requests in its SYN queue, bounded by its backlog. When that \
                     queue is full (a SYN flood, or a burst larger than the backlog) and net.ipv4.tcp_syncookies \
                     is 1, the kernel encodes the request in the SYN-ACK's sequence number and keeps no state. \
                     With timestamps on, window scaling and SACK survive inside the cookie; without them those \
                     connections lose both. The kernel logs \"Possible SYN flooding on port\" the first time.",
            attribution: "Counter only: cookies are answers, not drops, so no drop reason marks them.",
            action: "Occasional cookies during bursts are harmless. A steady rate means the listener's backlog is \
                     too small for its SYN rate or a flood is under way: raise the application's listen() \
                     backlog and net.core.somaxconn, and look at where the SYNs come from.",
            requires: None,
            related: &[
                "TcpExtSyncookiesRecv",
                "TcpExtSyncookiesFailed",
                "TcpExtTCPReqQFullDoCookies",
                "TcpExtListenDrops",
            ],
        }),
    },
    Entry {
        name: "TcpExtSyncookiesRecv",
        kind: Kind::Counter,
        group: Group::SynListen,
        meaning: "Connections opened from a valid SYN cookie carried by the handshake-completing ACK.",
        detail: Some(Detail {
            causes: "A client answered a cookie SYN-ACK (TcpExtSyncookiesSent) and the cookie checked out, so the \
                     kernel built the connection without having queued it. The gap between cookies sent and \
                     received is clients that never completed, normal under a flood of spoofed SYNs.",
            attribution: "Counter only.",
            action: "Nothing by itself; read it against TcpExtSyncookiesSent.",
            requires: None,
            related: &["TcpExtSyncookiesSent", "TcpExtSyncookiesFailed"],
        }),
    },
    Entry {
        name: "TcpExtSyncookiesFailed",
        kind: Kind::Counter,
        group: Group::SynListen,
        meaning: "ACKs to a listener that matched no queued request and carried no valid SYN cookie.",
        detail: Some(Detail {
            causes: "Shortly after cookies were sent, an ACK arrived for which the listener had no request and \
                     whose cookie did not decode: a client that took too long to answer, a forged ACK, an ACK \
                     scan. The kernel answers it with a reset, as for a closed port.",
            attribution: "Counter only.",
            action: "A handful is noise. Many mean forged ACKs aimed at the cookie check or very slow clients; \
                     look at their sources.",
            requires: None,
            related: &["TcpExtSyncookiesSent", "TcpExtSyncookiesRecv"],
        }),
    },
    Entry {
        name: "TcpExtTCPReqQFullDrop",
        kind: Kind::Counter,
        group: Group::SynListen,
        meaning: "SYNs dropped because a listener's SYN queue was full and SYN cookies could not be used.",
        detail: Some(Detail {
            causes: "The queue of half-open requests reached the listener's backlog while \
                     net.ipv4.tcp_syncookies is 0, so the SYN was discarded. Clients resend it 1, 3 and 7 s after \
                     the first try. A SYN flood, a backlog too small for the connection rate, or clients \
                     that never complete their handshakes.",
            attribution: "Counter only (it also raises TcpExtListenDrops).",
            action: "Turn SYN cookies on (net.ipv4.tcp_syncookies=1, the default; `netdiag check` flags 0) and \
                     raise the listener's backlog.",
            requires: None,
            related: &["TcpExtTCPReqQFullDoCookies", "TcpExtSyncookiesSent", "TcpExtListenDrops", "unanswered_syns"],
        }),
    },
    counter(
        "TcpExtTCPReqQFullDoCookies",
        Group::SynListen,
        "A full SYN queue answered a SYN with a SYN cookie instead of dropping it.",
    ),
    counter(
        "TcpExtTCPDeferAcceptDrop",
        Group::SynListen,
        "Handshake-completing ACKs without data ignored by listeners using TCP_DEFER_ACCEPT.",
    ),
    counter("TcpActiveOpens", Group::SynListen, "Connections this host started (SYN sent)."),
    counter("TcpPassiveOpens", Group::SynListen, "Connections opened by a peer's handshake on a local listener."),
    counter(
        "TcpAttemptFails",
        Group::SynListen,
        "Connection attempts that failed during the handshake (reset or given up in SYN-SENT or SYN-RECV).",
    ),
    // ---- Resets -----------------------------------------------------------------------
    counter(
        "TcpEstabResets",
        Group::Resets,
        "Established connections closed abruptly: reset sent or received, or timed out.",
    ),
    counter("TcpOutRsts", Group::Resets, "Segments sent with the RST flag."),
    counter("TcpExtEmbryonicRsts", Group::Resets, "Resets received for connections still in the handshake (SYN-RECV)."),
    counter(
        "TcpExtTCPAbortOnData",
        Group::Resets,
        "Connections reset at close: SO_LINGER with a zero timeout, or data arriving after the application closed.",
    ),
    counter(
        "TcpExtTCPAbortOnClose",
        Group::Resets,
        "Connections reset because the application closed them with unread data.",
    ),
    counter(
        "TcpExtTCPAbortOnMemory",
        Group::Resets,
        "Closing connections reset for lack of memory or because of too many orphans (tcp_max_orphans).",
    ),
    counter(
        "TcpExtTCPAbortOnTimeout",
        Group::Resets,
        "Connections given up after their retransmission, keepalive or probe timers ran out.",
    ),
    counter("TcpExtTCPAbortOnLinger", Group::Resets, "FIN-WAIT-2 connections ended early because of TCP_LINGER2."),
    counter(
        "TcpExtTCPAbortFailed",
        Group::Resets,
        "Resets the kernel wanted to send but could not (allocation failure).",
    ),
    // ---- Retransmits --------------------------------------------------------------------
    counter("TcpRetransSegs", Group::Retransmits, "Segments retransmitted."),
    counter(
        "TcpExtTCPSynRetrans",
        Group::Retransmits,
        "SYN and SYN-ACK retransmissions: handshakes that got no timely answer.",
    ),
    counter("TcpExtTCPTimeouts", Group::Retransmits, "Retransmission timer expirations (RTO)."),
    counter(
        "TcpExtTCPFastRetrans",
        Group::Retransmits,
        "Segments resent by fast retransmit, triggered by duplicate ACKs or SACK.",
    ),
    counter("TcpExtTCPSlowStartRetrans", Group::Retransmits, "Segments resent in slow start after a timeout."),
    counter("TcpExtTCPLostRetransmit", Group::Retransmits, "Retransmitted segments that were lost again."),
    counter("TcpExtTCPRetransFail", Group::Retransmits, "Retransmissions that could not be handed to the device."),
    counter("TcpExtTCPLossProbes", Group::Retransmits, "Tail loss probes sent to detect a lost last segment early."),
    counter("TcpExtTCPLossProbeRecovery", Group::Retransmits, "Losses repaired thanks to a tail loss probe."),
    counter("TcpExtTCPSackRecovery", Group::Retransmits, "Entries into loss recovery on SACK connections."),
    counter("TcpExtTCPRenoRecovery", Group::Retransmits, "Entries into loss recovery on connections without SACK."),
    counter("TcpExtTCPSackRecoveryFail", Group::Retransmits, "SACK recoveries that ended in a retransmission timeout."),
    counter(
        "TcpExtTCPRenoRecoveryFail",
        Group::Retransmits,
        "Recoveries without SACK that ended in a retransmission timeout.",
    ),
    counter(
        "TcpExtTCPSackFailures",
        Group::Retransmits,
        "Retransmission timeouts while SACKs showed data missing, before recovery began.",
    ),
    counter(
        "TcpExtTCPRenoFailures",
        Group::Retransmits,
        "Retransmission timeouts after duplicate ACKs, before recovery began (no SACK).",
    ),
    counter(
        "TcpExtTCPLossFailures",
        Group::Retransmits,
        "Retransmission timeouts while already recovering from an earlier timeout.",
    ),
    counter(
        "TcpExtTCPSACKReneging",
        Group::Retransmits,
        "The peer discarded data it had already acknowledged by SACK.",
    ),
    counter("TcpExtTCPSpuriousRTOs", Group::Retransmits, "Retransmission timeouts found to be spurious (F-RTO)."),
    counter(
        "TcpExtTCPFullUndo",
        Group::Retransmits,
        "Congestion window cuts fully undone: the retransmissions were unnecessary.",
    ),
    counter(
        "TcpExtTCPPartialUndo",
        Group::Retransmits,
        "Congestion window cuts partly undone after unnecessary retransmissions.",
    ),
    counter(
        "TcpExtTCPDSACKUndo",
        Group::Retransmits,
        "Congestion window cuts undone because D-SACKs showed the data had arrived.",
    ),
    counter(
        "TcpExtTCPLossUndo",
        Group::Retransmits,
        "Timeout-driven window cuts undone because the data had in fact arrived.",
    ),
    counter("TcpExtTCPDSACKOldSent", Group::Retransmits, "D-SACKs sent for duplicates of already acknowledged data."),
    counter("TcpExtTCPDSACKOfoSent", Group::Retransmits, "D-SACKs sent for duplicates of out-of-order data."),
    counter("TcpExtTCPDSACKRecv", Group::Retransmits, "D-SACKs received: the peer got duplicates of data sent here."),
    counter("TcpExtTCPDSACKOfoRecv", Group::Retransmits, "D-SACKs received for duplicated out-of-order data."),
    counter("TcpExtTCPDSACKRecvSegs", Group::Retransmits, "Segments covered by the D-SACKs received."),
    counter(
        "TcpExtTCPSpuriousRtxHostQueues",
        Group::Retransmits,
        "Retransmissions skipped because the original was still queued in this host.",
    ),
    counter(
        "TcpExtTcpTimeoutRehash",
        Group::Retransmits,
        "Path rehashes (new flow label or hash) after retransmission timeouts.",
    ),
    // ---- Other --------------------------------------------------------------------------
    counter("TcpInSegs", Group::Other, "Segments received, errors included."),
    counter("TcpOutSegs", Group::Other, "Segments sent, retransmissions excluded."),
    counter("TcpInErrs", Group::Other, "Segments received with errors, such as a bad checksum or a malformed header."),
    counter("TcpInCsumErrors", Group::Other, "Segments received with a bad TCP checksum."),
    counter("TcpExtTW", Group::Other, "TIME_WAIT sockets that completed their timeout."),
    counter(
        "TcpExtTWRecycled",
        Group::Other,
        "TIME_WAIT 4-tuples reused early by outgoing connections (tcp_tw_reuse).",
    ),
    counter(
        "TcpExtTCPTimeWaitOverflow",
        Group::Other,
        "Connections closed without TIME_WAIT because tcp_max_tw_buckets was reached.",
    ),
    counter("TcpExtDelayedACKs", Group::Other, "ACKs sent by the delayed-ACK timer."),
    counter("TcpExtDelayedACKLocked", Group::Other, "Delayed ACKs postponed because the application held the socket."),
    counter(
        "TcpExtDelayedACKLost",
        Group::Other,
        "Data received again that had already arrived: an ACK of ours was probably lost.",
    ),
    counter("TcpExtTCPHPHits", Group::Other, "Data segments handled on the fast path."),
    counter("TcpExtTCPPureAcks", Group::Other, "Pure ACKs handled on the slow path."),
    counter("TcpExtTCPHPAcks", Group::Other, "Pure ACKs handled on the fast path."),
    counter("TcpExtTCPSACKReorder", Group::Other, "Reordering detected through SACK."),
    counter("TcpExtTCPRenoReorder", Group::Other, "Reordering detected through duplicate ACKs (no SACK)."),
    counter("TcpExtTCPTSReorder", Group::Other, "Reordering detected through timestamps when a hole was filled."),
    counter("TcpExtPruneCalled", Group::Other, "Receive queues pruned because a socket exceeded its receive buffer."),
    counter("TcpExtRcvPruned", Group::Other, "Received data dropped because pruning could not free enough memory."),
    counter("TcpExtOfoPruned", Group::Other, "Out-of-order queues dropped to free memory."),
    counter("TcpExtTCPRcvCollapsed", Group::Other, "Queued segments merged to save memory."),
    counter("TcpExtTCPRcvCoalesce", Group::Other, "Segments merged into the previous one in a receive queue."),
    counter("TcpExtTCPBacklogCoalesce", Group::Other, "Segments merged while queued behind a busy socket."),
    counter("TcpExtTCPBacklogDrop", Group::Other, "Segments dropped because a busy socket's backlog was full."),
    counter("TcpExtTCPOFOQueue", Group::Other, "Out-of-order segments queued until the gap fills."),
    counter("TcpExtTCPOFODrop", Group::Other, "Out-of-order segments dropped for lack of receive memory."),
    counter("TcpExtTCPOFOMerge", Group::Other, "Out-of-order segments overlapping data already queued."),
    counter("TcpExtTCPRcvQDrop", Group::Other, "Segments dropped because the receive queue was out of memory."),
    counter("TcpExtTCPZeroWindowDrop", Group::Other, "Segments dropped because the receive window was zero."),
    counter("TcpExtTCPToZeroWindowAdv", Group::Other, "Times the advertised receive window dropped to zero."),
    counter("TcpExtTCPFromZeroWindowAdv", Group::Other, "Times the advertised receive window reopened from zero."),
    counter(
        "TcpExtTCPWantZeroWindowAdv",
        Group::Other,
        "Times a zero window was due but not advertised (windows may not shrink).",
    ),
    counter("TcpExtTCPMemoryPressures", Group::Other, "Entries into TCP memory pressure (net.ipv4.tcp_mem)."),
    counter("TcpExtTCPMemoryPressuresChrono", Group::Other, "Milliseconds spent under TCP memory pressure."),
    counter("TcpExtLockDroppedIcmps", Group::Other, "ICMP errors dropped because the socket was busy."),
    counter("TcpExtTCPOrigDataSent", Group::Other, "Segments sent with new data (not retransmissions)."),
    counter("TcpExtTCPDelivered", Group::Other, "Segments acknowledged by peers."),
    counter("TcpExtTCPDeliveredCE", Group::Other, "Acknowledged segments that carried an ECN congestion mark."),
    counter("TcpExtTCPAutoCorking", Group::Other, "Small writes held back briefly to be sent together."),
    counter("TcpExtTCPWinProbe", Group::Other, "Zero-window probes sent."),
    counter("TcpExtTCPKeepAlive", Group::Other, "Keepalive probes sent."),
    counter("TcpExtTCPMTUPFail", Group::Other, "Path MTU probes that failed."),
    counter("TcpExtTCPMTUPSuccess", Group::Other, "Path MTU probes that succeeded."),
    counter("TcpExtTCPMinTTLDrop", Group::Other, "Segments dropped for arriving with a TTL below IP_MINTTL."),
    counter("TcpExtTCPMD5NotFound", Group::Other, "Segments dropped: a TCP-MD5 signature was expected but missing."),
    counter(
        "TcpExtTCPMD5Unexpected",
        Group::Other,
        "Segments dropped: a TCP-MD5 signature was present but not expected.",
    ),
    counter("TcpExtTCPMD5Failure", Group::Other, "Segments dropped: the TCP-MD5 signature was wrong."),
    // ---- Drop reasons -------------------------------------------------------------------
    Entry {
        name: "TCP_RFC7323_PAWS",
        kind: Kind::DropReason,
        group: Group::Paws,
        meaning: "A segment failed the PAWS timestamp check on an established, half-open or connecting socket.",
        detail: Some(Detail {
            causes: "Raised where TcpExtPAWSEstab (established or SYN_RECV socket) or TcpExtPAWSActive (SYN-SENT) \
                     is counted: the segment's TSval is behind the newest one accepted, or a SYN-ACK echoes a \
                     timestamp our SYN never carried. Before Linux 6.16 it also covered TIME_WAIT rejections, \
                     and before 6.14 late pure ACKs.",
            attribution: "netdiag's skb:kfree_skb program watches this reason (its number resolved by name on \
                          the running kernel), keys each drop by peer address, namespace and socket state, and \
                          counts them exactly in a per-CPU kernel map; diagnose turns them into paws_rejections.",
            action: "Read TcpExtPAWSEstab; name the peer with `netdiag diagnose`.",
            requires: None,
            related: &["TcpExtPAWSEstab", "TcpExtPAWSActive", "paws_rejections"],
        }),
    },
    Entry {
        name: "TCP_RFC7323_PAWS_ACK",
        kind: Kind::DropReason,
        group: Group::Paws,
        meaning: "A pure ACK arrived after newer data and failed PAWS (Linux 6.14+); benign reordering.",
        detail: Some(Detail {
            causes: "An ACK overtaken by a later data segment of the same connection, typically because the \
                     sender used different transmit queues for them. The kernel drops it without replying.",
            attribution: "Watched with the other PAWS reasons and included in paws_rejections (variant \
                          established); TcpExtPAWSOldAck is the matching counter.",
            action: "Usually nothing; read TcpExtPAWSOldAck.",
            requires: None,
            related: &["TcpExtPAWSOldAck", "paws_rejections"],
        }),
    },
    Entry {
        name: "TCP_RFC7323_TW_PAWS",
        kind: Kind::DropReason,
        group: Group::Paws,
        meaning: "A TIME_WAIT socket refused a segment whose timestamp was older than the previous connection's \
                  (Linux 6.16+).",
        detail: Some(Detail {
            causes: "Typically a SYN reusing a 4-tuple still in TIME_WAIT, sent by a host whose timestamp clock \
                     is behind the previous user of that address and port: several clients behind one NAT.",
            attribution: "netdiag keys these drops per peer and namespace and reports paws_rejections with \
                          variant time_wait; TcpExtPAWSTimewait is the matching counter.",
            action: "Read TcpExtPAWSTimewait and nat_timestamp_clocks.",
            requires: None,
            related: &["TcpExtPAWSTimewait", "nat_timestamp_clocks", "unanswered_syns"],
        }),
    },
    Entry {
        name: "TCP_RFC7323_TSECR",
        kind: Kind::DropReason,
        group: Group::Paws,
        meaning: "A handshake-completing ACK echoed a timestamp this host never sent.",
        detail: Some(Detail {
            causes: "Timestamps rewritten between the hosts, an ACK belonging to another attempt on the same \
                     4-tuple, or handshakes completed blindly with forged packets.",
            attribution: "netdiag keys these drops per peer (paws_rejections, variant tsecr); \
                          TcpExtTSEcrRejected is the matching counter.",
            action: "Read TcpExtTSEcrRejected.",
            requires: None,
            related: &["TcpExtTSEcrRejected", "paws_rejections"],
        }),
    },
    Entry {
        name: "TCP_OLD_SEQUENCE",
        kind: Kind::DropReason,
        group: Group::OutOfWindow,
        meaning: "The whole segment lies before the receive window: data already received and acknowledged.",
        detail: Some(Detail {
            causes: "Retransmissions of data that had already arrived (an ACK of ours was lost or late), \
                     duplicates made in the network, or a peer replaying old segments. Normal in small numbers. \
                     Each is answered with a duplicate ACK, rate-limited (TcpExtTCPACKSkippedSeq).",
            attribution: "Visible on skb:kfree_skb with this reason; netdiag's drop probe keys it per peer like \
                          the PAWS reasons (finding out_of_window_flood when sustained).",
            action: "Ignore a trickle. A flood from one peer means it or a middlebox is out of step with the \
                     connection: capture and compare sequence numbers.",
            requires: None,
            related: &["TCP_INVALID_SEQUENCE", "TcpExtTCPACKSkippedSeq", "out_of_window_flood"],
        }),
    },
    Entry {
        name: "TCP_INVALID_SEQUENCE",
        kind: Kind::DropReason,
        group: Group::OutOfWindow,
        meaning: "The segment starts beyond the receive window (counted in TcpExtBeyondWindow on 6.17+).",
        detail: Some(Detail {
            causes: "A sender ignoring the advertised window, a middlebox that shifted sequence numbers or lost \
                     the flow after a failover, segments of another connection on the same 4-tuple, or injected \
                     packets. Its sibling TCP_INVALID_END_SEQUENCE marks segments that start inside the window \
                     but run past it.",
            attribution: "netdiag's drop probe keys these per peer and namespace (finding out_of_window_flood) \
                          and compares them with TcpExtBeyondWindow.",
            action: "Read TcpExtBeyondWindow.",
            requires: None,
            related: &["TcpExtBeyondWindow", "TCP_OLD_SEQUENCE", "out_of_window_flood"],
        }),
    },
    Entry {
        name: "TCP_LISTEN_OVERFLOW",
        kind: Kind::DropReason,
        group: Group::SynListen,
        meaning: "The ACK completing a handshake was dropped because the listener's accept queue was full \
                  (Linux 6.15+).",
        detail: Some(Detail {
            causes: "The application accepts connections more slowly than they complete, or its backlog is too \
                     small. The request stays half-open and the server resends its SYN-ACK, while the client may \
                     already believe it is connected and send data that goes unanswered.",
            attribution: "netdiag's drop probe can tie these drops to peers; `netdiag check` shows which listener \
                          is full right now; TcpExtListenOverflows is the total, refused SYNs included.",
            action: "Read TcpExtListenOverflows.",
            requires: None,
            related: &["TcpExtListenOverflows", "TcpExtListenDrops", "unanswered_syns"],
        }),
    },
    // ---- Findings -----------------------------------------------------------------------
    Entry {
        name: "paws_rejections",
        kind: Kind::Finding,
        group: Group::Paws,
        meaning: "One peer's segments were dropped by a PAWS timestamp check; with the kernel's exact count, \
                  rate and time span.",
        detail: Some(Detail {
            causes: "The variant says where the check failed: established (stale TSval on a live connection), \
                     syn_recv (during the handshake), time_wait (a reconnect meeting TIME_WAIT), syn_sent (this \
                     host's own connects) or tsecr (a bogus echo in a handshake ACK). Behind all of them: \
                     timestamps rewritten by a middlebox, several hosts behind one address, or a clock that \
                     jumped.",
            attribution: "Built from the kernel-side per-peer counts of drops with reasons TCP_RFC7323_PAWS, \
                          TCP_RFC7323_PAWS_ACK, TCP_RFC7323_TW_PAWS and TCP_RFC7323_TSECR on skb:kfree_skb, \
                          split by the state of the dropping socket; the report's attribution table sets their \
                          sum beside each PAWS counter's delta.",
            action: "Follow the finding's advice: it depends on the variant and on this host's \
                     net.ipv4.tcp_timestamps and tcp_invalid_ratelimit.",
            requires: Some("Drops the kernel itself gave a PAWS drop reason, or that the paws_time_wait hook found \
                            by recomputing tcp_paws_reject (kernels that drop PAWS against TIME_WAIT without a \
                            reason), counted per peer; a PAWS counter that rose with no such drop names no peer and \
                            makes no finding. Its kernel facts are those per-peer counts and the namespace's PAWS \
                            counters."),
            related: &[
                "TcpExtPAWSEstab",
                "TcpExtPAWSTimewait",
                "TcpExtPAWSActive",
                "TcpExtTSEcrRejected",
                "TcpExtPAWSOldAck",
            ],
        }),
    },
    Entry {
        name: "ack_loop",
        kind: Kind::Finding,
        group: Group::OutOfWindow,
        meaning: "This host and one peer keep answering each other's invalid segments with duplicate ACKs: an \
                  ACK storm.",
        detail: Some(Detail {
            causes: "Each side finds the other's segments invalid (stale timestamps or sequence numbers out of \
                     window, usually because a device in the path rewrote them) and answers every one with a \
                     duplicate ACK, which the other side rejects in turn. With net.ipv4.tcp_invalid_ratelimit \
                     at 0, or on kernels before 4.0 that lack it, nothing slows this down and the pair trade \
                     pure ACKs at line rate: hundreds of megabits per second that look like an attack.",
            attribution: "Per flow (namespace and 4-tuple) in a kernel map: drops with the out-of-window reasons \
                          (TCP_RFC7323_PAWS, TCP_OLD_SEQUENCE, TCP_INVALID_SEQUENCE, TCP_INVALID_END_SEQUENCE, \
                          ACK checks) on skb:kfree_skb, and pure ACKs leaving the host that repeat the flow's last \
                          segment on net:net_dev_queue. A flow whose out-of-window ACKs in and duplicate ACKs out \
                          are both sustained and matched, with no data moving, for a second is named with both \
                          endpoints, rates, start and end. Read with TcpExtTCPACKSkippedPAWS and \
                          TcpExtTCPACKSkippedSeq: rising skips show the limiter containing the loop, none while \
                          the drops race on means the limiter is off.",
            action: "At once: make sure net.ipv4.tcp_invalid_ratelimit is above 0 (default 500 ms; `netdiag \
                     check` marks 0 critical), or kill the connection (`ss -K dst PEER` where supported). Then \
                     capture on both sides to find the device that rewrites sequence numbers or timestamps. \
                     Turning timestamps off ends a timestamp loop too, but only hides the cause and costs PAWS \
                     and RTT precision.",
            requires: Some("Per second, at least 10 out-of-window segments in, mostly pure ACKs, and as many \
                            duplicate ACKs out within a factor of two, with no data moving; and proof that the \
                            segments answer ours. Either the other end, seen here: the same connection the other \
                            way round in another local namespace, rejecting our duplicate ACKs and answering as \
                            many over the same intervals. Or, with the other end on another host, the pace: the \
                            segments come at one per round trip (rate in times the connection's smoothed RTT, \
                            tcp_sock.srtt_us read as each duplicate ACK leaves, between 0.5 and 2), as answers to \
                            ours do and a sender's own clock does not. At any other pace, or with the RTT \
                            unreadable, the same traffic is an out_of_window_flood of variant unthrottled."),
            related: &["TcpExtTCPACKSkippedPAWS", "TcpExtTCPACKSkippedSeq", "TcpExtPAWSEstab", "out_of_window_flood"],
        }),
    },
    Entry {
        name: "out_of_window_flood",
        kind: Kind::Finding,
        group: Group::OutOfWindow,
        meaning: "One peer sends a sustained stream of segments outside the receive window.",
        detail: Some(Detail {
            causes: "A peer or middlebox out of step with the connection's sequence numbers (state lost after a \
                     failover, a sequence-randomising firewall), a sender ignoring the advertised window, or \
                     blind injection attempts. Each segment costs a duplicate ACK up to the limiter and can \
                     grow into an ack_loop.",
            attribution: "Per-flow counts of drops with out-of-window reasons on skb:kfree_skb, and of the \
                          duplicate ACKs that answered them (net:net_dev_queue); the answers the limiter held back \
                          are the difference (or its own count where fexit/kretprobe can read it), set beside \
                          TcpExtBeyondWindow and TcpExtTCPACKSkippedSeq.",
            action: "Capture both ends and compare sequence and acknowledgment numbers to find where they shift; \
                     if the sources are many and random, treat it as an attack and filter upstream.",
            requires: Some("A second with at least 10 out-of-window segments in on the flow, and either most answers \
                            held back by tcp_invalid_ratelimit, or every segment answered (in and out within a \
                            factor of two, no data moving) with no local other end answering ours and a pace \
                            other than one segment per round trip: variant unthrottled, whose advice is about the \
                            sender, not about a middlebox or a loop. The episode ends after a second without."),
            related: &[
                "TcpExtBeyondWindow",
                "TcpExtTCPACKSkippedSeq",
                "TCP_INVALID_SEQUENCE",
                "TCP_OLD_SEQUENCE",
                "ack_loop",
            ],
        }),
    },
    Entry {
        name: "unanswered_syns",
        kind: Kind::Finding,
        group: Group::SynListen,
        meaning: "A peer's SYNs reached this host but got no SYN-ACK.",
        detail: Some(Detail {
            causes: "The kernel refused them without a word: a TIME_WAIT socket rejected them by PAWS (an older \
                     timestamp clock on a reused 4-tuple, the NAT case; before Linux 4.12 tcp_tw_recycle did \
                     the same against any recent connection from that address), the listener's accept queue \
                     was full, or its SYN queue was full with SYN cookies off. The client sees its SYN resent \
                     and a connect timeout while other clients connect fine.",
            attribution: "The SYN funnel per peer and listening port: SYNs arriving (net:netif_receive_skb, or \
                          tcp_conn_request with fentry/kprobe), SYN-ACKs leaving (net:net_dev_queue) and \
                          retransmitted (tcp:tcp_retransmit_synack), handshakes completed \
                          (sock:inet_sock_set_state), and drops with reasons TCP_RFC7323_TW_PAWS, \
                          TCP_LISTEN_OVERFLOW and TCP_INVALID_SYN. SYNs the kernel drops without a reason are \
                          matched with TcpExtListenOverflows, TcpExtTCPReqQFullDrop and TcpExtPAWSTimewait of \
                          their namespace; `netdiag check` shows full listeners and the settings involved.",
            action: "PAWS: read nat_timestamp_clocks and TcpExtPAWSTimewait. Full queues: read \
                     TcpExtListenOverflows and TcpExtTCPReqQFullDrop. On a kernel older than 4.12, set \
                     net.ipv4.tcp_tw_recycle=0.",
            requires: Some("SYNs counted in and fewer answers out. A challenge ACK is an answer: a SYN on a \
                            connection this host holds open (TCP_INVALID_SYN, TcpExtTCPSYNChallenge) counts as \
                            answered as far as the namespace's TcpExtTCPChallengeACK rose (funnel.challenge_acks); \
                            so is a duplicate ACK, where the kernel checks PAWS before the SYN (6.1) and the SYN on \
                            an open connection carried an older timestamp (drop samples of TCP_RFC7323_PAWS that \
                            were SYNs, as far as TcpExtPAWSEstab less TcpExtTCPACKSkippedPAWS rose: \
                            funnel.paws_dupacks). \
                            Drops with TCP_CSUM, TCP_FLAGS, SOCKET_BACKLOG or NO_SOCKET (with --reason no_socket) \
                            count too: at a listener or request always, on a connection as far as the drop samples \
                            show SYNs; TcpInCsumErrors and TcpExtTCPSYNChallenge stand in for reasons not seen. \
                            Variant unknown only when no reason, counter or answer accounts for the SYNs, and its \
                            advice names places netdiag does not look (netfilter, rp_filter) as candidates, never as \
                            the cause. The summary says NAT only beside a nat_timestamp_clocks finding."),
            related: &[
                "TcpExtPAWSTimewait",
                "TcpExtListenOverflows",
                "TcpExtTCPReqQFullDrop",
                "TCP_RFC7323_TW_PAWS",
                "nat_timestamp_clocks",
            ],
        }),
    },
    Entry {
        name: "nat_timestamp_clocks",
        kind: Kind::Finding,
        group: Group::Paws,
        meaning: "Segments from one peer address carry timestamps from more than one clock: several hosts behind \
                  one NAT.",
        detail: Some(Detail {
            causes: "Each host stamps TCP segments from its own clock. Behind a NAT many hosts share one address, \
                     so a server remembering the newest timestamp per 4-tuple (TIME_WAIT), or per address with \
                     tcp_tw_recycle on kernels before 4.12, sees time run backwards whenever another host lands \
                     on the same entry, and PAWS drops its SYNs. Random timestamp offsets (tcp_timestamps=1) do \
                     not help here: they hide each host's uptime but leave the clocks of different hosts just as \
                     unordered.",
            attribution: "From the TSval of every SYN the peer sends, sampled as it arrives \
                          (net:netif_receive_skb): the SYNs of one clock lie on one line of TSval against time. \
                          Several hosts are proven when one source port carries two clocks, when two clocks are \
                          each shared by several ports, when clocks tick at different rates, or when the kernel \
                          rejects a SYN as older than the last connection on its 4-tuple (TCP_RFC7323_TW_PAWS); \
                          hosts with a random offset per connection (Linux tcp_timestamps=1) show one line per \
                          connection and prove nothing on their own.",
            action: "Server: never enable tcp_tw_recycle (kernels before 4.12), and avoid holding TIME_WAIT for \
                     clients (let them close first, keep connections alive). NAT: more addresses or a wider port \
                     range make 4-tuple reuse rarer. Turning timestamps off on the server stops the drops but \
                     costs PAWS protection and RTT precision: the last resort.",
            requires: Some("One of the proofs above in the SYNs' own TSvals; a SYN rejected against TIME_WAIT proves \
                            a second host only with a TSval its clock had not sent. Left out of the estimate, as \
                            proving nothing: a SYN whose TSval the address already sent (a replay or \
                            retransmission), one within a clock's past on the same source port (an older SYN \
                            replayed), and one the kernel dropped as TCP_INVALID_SYN or TCP_CSUM; they are counted \
                            in timestamp_clocks[].excluded by why, and the evidence says how many were left out."),
            related: &["TcpExtPAWSTimewait", "TCP_RFC7323_TW_PAWS", "unanswered_syns", "paws_rejections"],
        }),
    },
];

/// How many close names an unknown one gets.
const MAX_SUGGESTIONS: usize = 3;

/// The entry `query` names, in any case, with or without the `TcpExt` or `SKB_DROP_REASON_`
/// prefix.
pub fn lookup(query: &str) -> Option<&'static Entry> {
    let wanted = comparable(query);
    ENTRIES.iter().find(|entry| comparable(entry.name) == wanted)
}

/// Up to three names within a small edit distance of `query`, closest first.
pub fn suggestions(query: &str) -> Vec<&'static str> {
    let wanted = comparable(query);
    let tolerance = (wanted.len() / 3).max(2);
    let mut close: Vec<(usize, &'static str)> = ENTRIES
        .iter()
        .map(|entry| (edit_distance(&wanted, &comparable(entry.name)), entry.name))
        .filter(|&(distance, _)| distance <= tolerance)
        .collect();
    close.sort();
    close.into_iter().take(MAX_SUGGESTIONS).map(|(_, name)| name).collect()
}

/// Group and one-line meaning of a counter as `nstat` names it; counters missing from the
/// table (new kernels add some) are grouped by their name.
pub fn describe_counter(name: &str) -> (Group, &'static str) {
    match ENTRIES.iter().find(|entry| entry.kind == Kind::Counter && entry.name == name) {
        Some(entry) => (entry.group, entry.meaning),
        None => (group_by_name(name), UNDESCRIBED),
    }
}

/// Name fragments of counters and the group they suggest, most specific first
/// (`TCPACKSkippedPAWS` is about skipped ACKs, not PAWS).
const NAME_HINTS: &[(&str, Group)] = &[
    ("ACKSkipped", Group::OutOfWindow),
    ("OutOfWindow", Group::OutOfWindow),
    ("BeyondWindow", Group::OutOfWindow),
    ("Challenge", Group::OutOfWindow),
    ("PAWS", Group::Paws),
    ("TSEcr", Group::Paws),
    ("Retrans", Group::Retransmits),
    ("Timeout", Group::Retransmits),
    ("LossProbe", Group::Retransmits),
    ("Syncookies", Group::SynListen),
    ("Listen", Group::SynListen),
    ("ReqQ", Group::SynListen),
    ("Syn", Group::SynListen),
    ("Rst", Group::Resets),
    ("Reset", Group::Resets),
    ("Abort", Group::Resets),
];

fn group_by_name(name: &str) -> Group {
    NAME_HINTS.iter().find(|(fragment, _)| name.contains(fragment)).map_or(Group::Other, |&(_, group)| group)
}

/// Lower case, without the prefixes users may leave out.
fn comparable(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let short = lower.strip_prefix("tcpext").or_else(|| lower.strip_prefix("skb_drop_reason_")).unwrap_or(&lower);
    short.to_owned()
}

/// Levenshtein distance: insertions, deletions and substitutions each cost one.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, &b_char) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(a_char != b_char);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::{hooks::PAWS_REASONS, verdict::paws::PAWS_COUNTERS};

    #[test]
    fn finds_names_in_any_case_with_or_without_prefix() {
        for query in ["TcpExtPAWSTimewait", "PAWSTimewait", "pawstimewait", " TCPEXTPAWSTIMEWAIT "] {
            assert_eq!(lookup(query).map(|e| e.name), Some("TcpExtPAWSTimewait"), "{query}");
        }
        assert_eq!(lookup("skb_drop_reason_tcp_rfc7323_tw_paws").map(|e| e.name), Some("TCP_RFC7323_TW_PAWS"));
        assert_eq!(lookup("ACK_LOOP").map(|e| e.name), Some("ack_loop"));
        assert_eq!(lookup("TCPACKSkippedSeq").map(|e| e.name), Some("TcpExtTCPACKSkippedSeq"));
        assert_eq!(lookup("TcpInSegs").map(|e| e.kind), Some(Kind::Counter));
        assert!(lookup("PAWS").is_none());
    }

    #[test]
    fn suggests_close_names_first() {
        assert_eq!(suggestions("PAWSTimewiat").first(), Some(&"TcpExtPAWSTimewait"));
        assert_eq!(suggestions("TCP_RFC7323_PAWZ").first(), Some(&"TCP_RFC7323_PAWS"));
        assert_eq!(suggestions("ack_lop"), vec!["ack_loop"]);
        assert!(suggestions("ListenOverflow").contains(&"TcpExtListenOverflows"));
        assert!(suggestions("TCPACKSkippedPaw").len() <= MAX_SUGGESTIONS);
        assert!(suggestions("completely unrelated words").is_empty());
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("timewait", "timewiat"), 2);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn groups_known_counters_from_the_table_and_others_by_name() {
        assert_eq!(describe_counter("TcpExtPAWSEstab").0, Group::Paws);
        assert_eq!(describe_counter("TcpExtTCPACKSkippedPAWS").0, Group::OutOfWindow);
        assert_eq!(describe_counter("TcpExtListenOverflows").0, Group::SynListen);
        assert_eq!(describe_counter("TcpEstabResets").0, Group::Resets);
        assert_eq!(describe_counter("TcpRetransSegs").0, Group::Retransmits);
        assert_eq!(describe_counter("TcpInSegs").0, Group::Other);
        // Not in the table: grouped by name, with the generic meaning.
        assert_eq!(describe_counter("TcpExtTCPACKSkippedSomethingNew"), (Group::OutOfWindow, UNDESCRIBED));
        assert_eq!(describe_counter("TcpExtPAWSFuture").0, Group::Paws);
        assert_eq!(describe_counter("TcpExtTCPSynRetransFuture").0, Group::Retransmits);
        assert_eq!(describe_counter("TcpExtTCPFastOpenActive"), (Group::Other, UNDESCRIBED));
        // Findings and drop reasons are not counters.
        assert_eq!(describe_counter("ack_loop").1, UNDESCRIBED);
    }

    #[test]
    fn names_are_unique_even_without_prefixes() {
        let mut seen = HashSet::new();
        for entry in ENTRIES {
            assert!(seen.insert(comparable(entry.name)), "{} twice", entry.name);
        }
    }

    #[test]
    fn meanings_fit_on_one_line() {
        for entry in ENTRIES {
            assert!(!entry.meaning.contains('\n') && entry.meaning.len() <= 120, "{}", entry.name);
            assert!(entry.meaning.ends_with('.'), "{}", entry.name);
        }
    }

    #[test]
    fn related_names_resolve() {
        for entry in ENTRIES {
            for name in entry.detail.iter().flat_map(|d| d.related) {
                assert_ne!(*name, entry.name);
                assert!(ENTRIES.iter().any(|e| e.name == *name), "{} refers to unknown {name}", entry.name);
            }
        }
    }

    #[test]
    fn findings_and_only_findings_say_what_they_require() {
        for entry in ENTRIES.iter().filter(|e| e.detail.is_some()) {
            let requires = entry.detail.as_ref().and_then(|d| d.requires);
            assert_eq!(requires.is_some(), entry.kind == Kind::Finding, "{}", entry.name);
        }
    }

    /// What the issue asks `explain` to cover, and what the rest of netdiag emits.
    #[test]
    fn covers_every_name_netdiag_reports() {
        let skipped =
            ["SynRecv", "PAWS", "Seq", "FinWait2", "TimeWait", "Challenge"].map(|s| format!("TcpExtTCPACKSkipped{s}"));
        let required = [
            "TcpExtListenOverflows",
            "TcpExtListenDrops",
            "TcpExtSyncookiesSent",
            "TcpExtSyncookiesRecv",
            "TcpExtSyncookiesFailed",
            "TcpExtBeyondWindow",
            "TcpExtTCPChallengeACK",
            "TCP_OLD_SEQUENCE",
            "TCP_INVALID_SEQUENCE",
            "TCP_LISTEN_OVERFLOW",
            "paws_rejections",
            "ack_loop",
            "out_of_window_flood",
            "unanswered_syns",
            "nat_timestamp_clocks",
        ];
        let names =
            PAWS_COUNTERS.iter().chain(PAWS_REASONS).copied().chain(skipped.iter().map(String::as_str)).chain(required);
        for name in names {
            let entry = lookup(name).unwrap_or_else(|| panic!("{name} missing"));
            assert!(entry.detail.is_some(), "{name} has no explanation");
        }
    }
}
