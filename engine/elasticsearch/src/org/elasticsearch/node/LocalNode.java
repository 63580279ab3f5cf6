/*
 * Part of the indexer project's local test node (engine/elasticsearch). Not Elasticsearch code:
 * it sits in Elasticsearch's package only to reach package-private members.
 */
package org.elasticsearch.node;

import indexer.local.RootPlugin;

import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.plugins.PluginsLoader;
import org.elasticsearch.transport.netty4.Netty4Plugin;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * A single-node Elasticsearch in one JVM, from the server jars on the class path.
 *
 * <pre>java -cp CLASSPATH org.elasticsearch.node.LocalNode HOME HTTP_PORT TRANSPORT_PORT CLUSTER_NAME
 *     [NODE_NAME SEED_HOSTS MASTER_NODES]</pre>
 *
 * CLUSTER_NAME is unique to the node's folder (scripts/engine.sh derives it from the path), so that
 * nodes of two checkouts never share a cluster; there is no shared default.
 *
 * Plugins: the Netty 4 HTTP/transport module and {@link RootPlugin} (GET / and HEAD /). No x-pack.
 * SIGTERM closes the node cleanly.
 *
 * Alone it uses single-node discovery. With the three last arguments it is one node of a cluster
 * (scripts/cluster.sh: one JVM per node): its NODE_NAME, its peers' transport addresses (SEED_HOSTS,
 * comma-separated host:port) and the master-eligible node names of the first election (MASTER_NODES).
 */
public final class LocalNode {
    private LocalNode() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 4 && args.length != 7) {
            System.err.println("usage: LocalNode HOME HTTP_PORT TRANSPORT_PORT CLUSTER_NAME [NODE_NAME SEED_HOSTS MASTER_NODES]");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        String clusterName = args[3];
        boolean clustered = args.length == 7;
        String nodeName = clustered ? args[4] : "node-1";
        Files.createDirectories(home.resolve("config"));
        Settings.Builder builder = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("cluster.name", clusterName)
            .put("node.name", nodeName)
            .put("network.host", "127.0.0.1")
            .put("http.port", args[1])
            .put("transport.port", args[2])
            // A nearly full disk must not turn test indices read-only.
            .put("cluster.routing.allocation.disk.threshold_enabled", false);
        if (clustered) {
            builder.putList("discovery.seed_hosts", args[5].split(","))
                .putList("cluster.initial_master_nodes", args[6].split(","));
        } else {
            builder.put("discovery.type", "single-node");
        }
        Settings settings = builder.build();

        LogConfigurator.configureESLogging();
        LogConfigurator.registerErrorListener();
        LogConfigurator.configureWithoutConfig(settings);

        Environment environment = InternalSettingsPreparer.prepareEnvironment(
            settings, Map.of(), home.resolve("config"), () -> nodeName);
        List<Class<? extends Plugin>> plugins = List.of(Netty4Plugin.class, RootPlugin.class);
        // No plugin bundles, no module layers: the plugins above come from the class path.
        PluginsLoader emptyLoader = PluginsLoader.createPluginsLoader(java.util.Set.of(), java.util.Set.of(), Map.of(), false);
        NodeConstruction construction = NodeConstruction.prepareConstruction(
            environment, emptyLoader, new ClasspathNodeServiceProvider(plugins), true);
        Node node = new Node(construction);

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(20, TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "local-node-shutdown"));
        node.start();
        System.out.println("local node started: http://127.0.0.1:" + args[1]);
        stopped.await();
    }
}
