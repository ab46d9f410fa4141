// ClusterBench: swift-cluster's side of the channel benchmark (see ../../channel.sh).
//
//   ClusterBench roundtrip N   N timed 32-byte request/reply echoes (after 2000 warm-up)
//   ClusterBench oneway N      worker streams N JSON {"i":k}, then N raw 32-byte messages
//   ClusterBench coldstart R   R runs of: fork 2 workers, time until both are listening
//   ClusterBench rss           fork 2 listening workers, settle 1 s, print primary VmRSS
//
// Each mode prints one JSON line per figure on stdout (oneway prints two), in the same
// shape as channel-baselines/ with "impl":"swift-cluster". Workers re-execute this binary
// with the same argv, so they know their mode from argv too.
//
// The work lives in Bench.swift, in nonisolated functions: top-level code here is
// main-actor isolated, and a closure passed to withTaskExecutorPreference from the main
// actor would run on the main actor, not on Cluster.executor.

await Bench.main()
