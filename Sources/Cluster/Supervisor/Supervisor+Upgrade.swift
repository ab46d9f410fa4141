import Logging
#if canImport(Glibc)
import Glibc
#endif

/// A hot upgrade: a new primary on the same listeners, which this one hands over to.
extension Supervisor {
    func startUpgrade() async {
        guard model.phase == .running else { return }
        if let upgrading {
            logger.notice("hot upgrade already in progress (new primary \(upgrading.child.pid))")
            return
        }
        let child: PrimaryUpgrade
        do {
            child = try await primary.upgrade { [feed] status in feed.yield(.upgradeEnded(status)) }
        } catch where error.code == .invalidConfiguration {
            // Refused (as PID 1): the reason says why and what to do instead.
            logger.error("\(error.context); this primary carries on")
            return
        } catch {
            logger.error("hot upgrade failed: \(error); this primary carries on")
            return
        }
        upgrading = (child, clock.now, false)
        guard model.phase == .running else {
            // Stopped while it was starting: it must not outlive this primary on the listeners.
            endUpgrade()
            return
        }
        logger.notice("hot upgrade: started a new primary (pid \(child.pid)) on the same listeners; this one drains when its workers are ready (within \(RestartLedger<ContinuousClock.Instant>.seconds(supervision.upgradeTimeout)))")
    }

    /// The new primary has not taken over within the upgrade timeout: kill it, carry on.
    func checkUpgradeDeadline(now: ContinuousClock.Instant) {
        guard let current = upgrading, !current.killed, model.phase == .running,
              current.startedAt.duration(to: now) > supervision.upgradeTimeout, !current.child.tookOver else { return }
        logger.error("hot upgrade failed: the new primary (pid \(current.child.pid)) did not take over within \(RestartLedger<ContinuousClock.Instant>.seconds(supervision.upgradeTimeout)); killing it (its workers die with it); this primary carries on")
        current.child.kill()
        upgrading?.killed = true
    }

    /// Stopping: a new primary that took over carries on; one that has not is killed
    /// first, so that nothing started here outlives this primary on the listeners.
    func endUpgrade() {
        guard let current = upgrading, !current.killed else { return }
        if current.child.tookOver {
            logger.notice("primary \(current.child.pid) took over: this one drains and exits")
            serviceStatus.handedOver()
            upgrading = nil
            return
        }
        logger.warning("stopping during a hot upgrade: killing the new primary (pid \(current.child.pid)) first (its workers die with it)")
        current.child.kill()
        upgrading?.killed = true
    }

    /// Started by a hot upgrade: once every worker is ready, the old primary may go.
    func takeOverIfReady() {
        guard !tookOver, let old = primary.upgradedFrom, model.phase == .running else { return }
        let ready = model.serving.count
        guard ready >= model.desired else { return }
        tookOver = true
        // Only our parent: a pid that is no longer the old primary's is never signalled.
        guard getppid() == old else { return }
        logger.notice("took over from primary \(old): its workers drain now")
        // The service manager follows this primary before the old one starts to go.
        notifyServiceManagerOfTakeOver()
        primary.announceTakeOver()
        kill(old, SIGTERM)
    }
}
