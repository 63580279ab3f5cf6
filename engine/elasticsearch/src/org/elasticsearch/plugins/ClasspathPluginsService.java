/*
 * Part of the indexer project's local test node (engine/elasticsearch). Not Elasticsearch code:
 * it sits in Elasticsearch's package only to reach package-private members.
 */
package org.elasticsearch.plugins;

import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;

import java.util.ArrayList;
import java.util.List;

/**
 * A plugins service whose plugins come from the class path (no plugins/ or modules/ directory,
 * no module layers), the way Elasticsearch's own test framework runs a node in one JVM.
 */
public class ClasspathPluginsService extends PluginsService {
    private final List<LoadedPlugin> classpathPlugins;

    public ClasspathPluginsService(Environment environment, PluginsLoader emptyLoader, List<Class<? extends Plugin>> pluginClasses) {
        super(environment.settings(), environment.configDir(), emptyLoader);
        Settings settings = environment.settings();
        List<LoadedPlugin> loaded = new ArrayList<>(pluginClasses.size());
        for (Class<? extends Plugin> pluginClass : pluginClasses) {
            Plugin plugin = loadPlugin(pluginClass, settings, environment.configDir());
            PluginDescriptor descriptor = new PluginDescriptor(
                pluginClass.getName(), "class path plugin", "NA", org.elasticsearch.Build.current().version(),
                System.getProperty("java.specification.version"), pluginClass.getName(), null, List.of(),
                false, false, false, false
            );
            loaded.add(new LoadedPlugin(descriptor, plugin, pluginClass.getClassLoader()));
        }
        loadExtensions(loaded);
        this.classpathPlugins = List.copyOf(loaded);
    }

    @Override
    protected List<LoadedPlugin> plugins() {
        return classpathPlugins;
    }
}
