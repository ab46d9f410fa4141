import Foundation
import Testing
import Yams

extension IntegrationTests {
    /// `deploy/container/` and `deploy/kubernetes/`: linted and validated by the tools
    /// operators use (hadolint; kubernetes-validate against the schemas of one Kubernetes
    /// version, offline), and consistent with each other and with the server's drain.
    /// A missing tool fails in CI (`.ci/run` installs both) and is skipped elsewhere.
    @Suite(.timeLimit(.minutes(1)))
    struct DeploymentFilesTests {
        static let deploy = "\(ContainerTests.repository)/deploy"
        static let dockerfile = "\(deploy)/container/Dockerfile"
        static let manifests = ["deployment", "service", "poddisruptionbudget", "horizontalpodautoscaler"]
            .map { "\(deploy)/kubernetes/\($0).yaml" }
        /// The oldest Kubernetes the manifests are written for.
        static let kubernetesVersion = "1.33.0"

        @Test func theDockerfilePassesHadolint() throws {
            guard let hadolint = requiredTool("hadolint", by: "DeploymentFilesTests") else { return }
            let (code, output) = try runToEnd(hadolint, [Self.dockerfile], timeout: .seconds(30))
            #expect(code == 0, "hadolint: \(output)")
        }

        @Test func theManifestsValidateAgainstKubernetesSchemas() throws {
            guard let validate = requiredTool("kubernetes-validate", by: "DeploymentFilesTests") else { return }
            let (code, output) = try runToEnd(validate, ["--kubernetes-version", Self.kubernetesVersion, "--strict"] + Self.manifests,
                                              timeout: .seconds(60))
            #expect(code == 0, "kubernetes-validate: \(output)")
            #expect(output.components(separatedBy: " passed for resource ").count - 1 == Self.manifests.count, "\(output)")
        }

        /// The pod's grace period covers the preStop sleep and the whole drain with room to
        /// spare; the probes ask the admin port the server is told to serve on; the Service,
        /// budget and autoscaler find the Deployment's pods; the pod runs as the image's user.
        @Test func theManifestsAgreeWithTheServersDrainPortsAndImage() throws {
            let deployment = try Self.load("deployment")
            let pod = try #require(deployment["spec"]?["template"]?["spec"])
            let container = try #require(pod["containers"]?[0])
            let environment = Dictionary(uniqueKeysWithValues: (container["env"]?.array() ?? []).compactMap { variable in
                variable["name"]?.string.map { ($0, variable["value"]?.string ?? "") }
            })
            let ports = Dictionary(uniqueKeysWithValues: (container["ports"]?.array() ?? []).compactMap { port in
                port["name"]?.string.flatMap { name in port["containerPort"]?.int.map { (name, $0) } }
            })

            // Grace ≥ preStop sleep + drain timeout + margin.
            let grace = try #require(pod["terminationGracePeriodSeconds"]?.int)
            let preStop = (container["lifecycle"]?["preStop"]?["exec"]?["command"]?.array() ?? []).compactMap(\.string)
            #expect(preStop.first == "sleep" && preStop.count == 2, "preStop: \(preStop)")
            let sleep = try #require(preStop.last.flatMap { Int($0) })
            let drain = try #require(environment["DRAIN_TIMEOUT_MS"].flatMap { Int($0) }) / 1000
            let margin = 5
            #expect(grace >= sleep + drain + margin, "terminationGracePeriodSeconds \(grace) < preStop \(sleep) + drain \(drain) + margin \(margin)")

            // Probes on the admin port the server serves, by the paths it answers.
            let admin = try #require(environment["ADMIN_PORT"].flatMap { Int($0) })
            for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
                let get = try #require(container[probe]?["httpGet"], "\(probe) is not an httpGet")
                #expect(get["path"]?.string == path)
                let port = get["port"]?.int ?? get["port"]?.string.flatMap { ports[$0] }
                #expect(port == admin, "\(probe) asks port \(String(describing: port)), the server's admin port is \(admin)")
            }
            #expect(ports["http"] == environment["PORT"].flatMap { Int($0) })

            // The same ports, drain timeout and user as the image.
            let image = try Dockerfile(path: Self.dockerfile)
            #expect(Set(image.exposedPorts) == Set(ports.values))
            #expect(image.environment["DRAIN_TIMEOUT_MS"] == environment["DRAIN_TIMEOUT_MS"])
            #expect(image.arguments("USER") == pod["securityContext"].flatMap { context in
                context["runAsUser"]?.int.flatMap { user in context["runAsGroup"]?.int.map { "\(user):\($0)" } }
            })

            // The Service, the budget and the autoscaler reach the Deployment's pods.
            let labels = try #require(deployment["spec"]?["template"]?["metadata"]?["labels"])
            let service = try Self.load("service")
            #expect(service["spec"]?["selector"] == labels)
            #expect(service["spec"]?["ports"]?[0]?["targetPort"]?.string == "http")
            #expect(try Self.load("poddisruptionbudget")["spec"]?["selector"]?["matchLabels"] == labels)
            let target = try Self.load("horizontalpodautoscaler")["spec"]?["scaleTargetRef"]
            #expect(target?["kind"]?.string == "Deployment" && target?["name"] == deployment["metadata"]?["name"])
        }

        static func load(_ name: String) throws -> Node {
            let text = try String(contentsOfFile: "\(deploy)/kubernetes/\(name).yaml", encoding: .utf8)
            return try #require(try Yams.compose(yaml: text), "\(name).yaml is empty")
        }
    }
}
