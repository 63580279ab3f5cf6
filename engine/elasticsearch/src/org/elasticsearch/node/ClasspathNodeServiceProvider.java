/*
 * Part of the indexer project's local test node (engine/elasticsearch). Not Elasticsearch code:
 * it sits in Elasticsearch's package only to reach package-private members.
 */
package org.elasticsearch.node;

import org.elasticsearch.env.Environment;
import org.elasticsearch.plugins.ClasspathPluginsService;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.plugins.PluginsLoader;
import org.elasticsearch.plugins.PluginsService;

import java.util.List;

/** Builds the node with {@link ClasspathPluginsService}; everything else is Elasticsearch's default. */
class ClasspathNodeServiceProvider extends NodeServiceProvider {
    private final List<Class<? extends Plugin>> pluginClasses;

    ClasspathNodeServiceProvider(List<Class<? extends Plugin>> pluginClasses) {
        this.pluginClasses = pluginClasses;
    }

    @Override
    PluginsService newPluginService(Environment environment, PluginsLoader pluginsLoader) {
        return new ClasspathPluginsService(environment, pluginsLoader, pluginClasses);
    }
}
