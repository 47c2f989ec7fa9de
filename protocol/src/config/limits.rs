//! The bounds every configuration file is held to, so that no input can exhaust the memory,
//! stack or CPU of the process that parses it.
//!
//! Each limit is far beyond any real configuration; going past one is an error at the offending
//! node that names the field, the value and the limit.

/// The largest configuration file, in bytes (1 MiB). The largest file in the dstack docs corpus
/// is under 4 KiB; a file of a thousand SSH hosts is about 100 KiB.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// How deeply collections may nest (`a: {b: [c]}` nests 3 deep). Real configurations nest at
/// most 6 deep; 64 keeps every recursive walk of the tree within a few KiB of stack.
pub const MAX_NESTING_DEPTH: usize = 64;

/// Aliases (`*name`) may always copy this many nodes in all, however small the file.
pub const ALIAS_EXPANSION_MIN_NODES: usize = 10_000;

/// ... or this many times the nodes written in the file, whichever is larger,
pub const ALIAS_EXPANSION_FACTOR: usize = 10;

/// ... but never more than this many (about 60 MB of tree), whatever the file's size.
pub const ALIAS_EXPANSION_MAX_NODES: usize = 1_000_000;

/// Aliases may copy at most this many bytes of scalar text in all (16 MiB): an anchored long
/// string repeated by many short aliases is bounded by this, not by the node count.
pub const ALIAS_EXPANSION_MAX_BYTES: usize = 16 * 1024 * 1024;

/// The most nodes a task may have (`nodes`, or the sum over `groups`), and the most a fleet may
/// provision (`nodes` min, target and max). The largest multi-node training jobs span a few
/// thousand machines, and every node becomes a job record that the scheduler places one by one;
/// 4,096 is above any single run dstack has been used for while keeping a plan's jobs in the
/// low megabytes.
pub const MAX_NODES: u32 = 4096;

/// The most replicas a service may have (`replicas`, a replica group's `count`, or the sum over
/// groups). Each replica is a job on its own instance, so this matches [`MAX_NODES`].
pub const MAX_REPLICAS: u32 = 4096;

/// The most blocks one host may be split into (fleet `blocks`, a host's `blocks`). A block
/// holds at least one GPU, or one CPU on a GPU-less host; the largest hosts have 8 to 16 GPUs
/// and under 1,024 CPU threads.
pub const MAX_BLOCKS: u32 = 1024;

/// The most hosts an SSH fleet may list (`ssh_config.hosts`); each is an instance, as with
/// [`MAX_NODES`].
pub const MAX_SSH_HOSTS: usize = 4096;

/// The most problems reported for one file, in file order; one more line counts the rest. A
/// mistyped file can hold a problem per line, and every one would travel to the client.
pub const MAX_REPORTED_ERRORS: usize = 100;
