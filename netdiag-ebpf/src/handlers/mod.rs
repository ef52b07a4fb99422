//! Feature handlers: what netdiag counts and samples, each given the packet context of the
//! program that runs it. They point down only (context, parser, maps, layout), never at an
//! attach point or at each other, but for the capture and sample shared by the drop handlers.
pub mod capture;
pub mod dupacks;
pub mod flows;
pub mod paws;
pub mod syn_funnel;
pub mod syn_timestamps;
pub mod time_wait;
