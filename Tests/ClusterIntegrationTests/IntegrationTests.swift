import Testing

/// Every test that starts processes, one at a time: they measure deadlines (a worker's
/// death within a second of its primary's) that a neighbour's load would blur.
@Suite(.serialized) enum IntegrationTests {}
