// java perf/BrokerRequests.java PID SECONDS: the Kafka broker's own request counts by type
// (kafka.network RequestsPerSec) and its all-topics counters, read over JMX from the
// broker's process (attach, local management agent) before and after SECONDS of whatever
// runs meanwhile; prints the per-second rates, highest first. For perf/RESULTS.md
// (2026-12-04 21:48: where a transaction's requests go). Java 17's source launcher runs it
// as it is; the broker's pid is in RUN_DIR/pids/kafka.pid.
import com.sun.tools.attach.VirtualMachine;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import javax.management.MBeanServerConnection;
import javax.management.ObjectName;
import javax.management.remote.JMXConnector;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;

public class BrokerRequests {
    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: java perf/BrokerRequests.java BROKER_PID SECONDS");
            System.exit(2);
        }
        int secs = Integer.parseInt(args[1]);
        VirtualMachine vm = VirtualMachine.attach(args[0]);
        try (JMXConnector c = JMXConnectorFactory.connect(new JMXServiceURL(vm.startLocalManagementAgent()))) {
            MBeanServerConnection s = c.getMBeanServerConnection();
            Map<String, Long> before = counts(s);
            System.err.printf("reading the broker's counters for %d s%n", secs);
            Thread.sleep(secs * 1000L);
            Map<String, Long> after = counts(s);
            List<Map.Entry<String, Long>> d = new ArrayList<>();
            for (Map.Entry<String, Long> e : after.entrySet())
                d.add(Map.entry(e.getKey(), e.getValue() - before.getOrDefault(e.getKey(), 0L)));
            d.sort((x, y) -> Long.compare(y.getValue(), x.getValue()));
            for (Map.Entry<String, Long> e : d)
                if (e.getValue() > 0)
                    System.out.printf("%12.1f/s  %s%n", e.getValue() / (double) secs, e.getKey());
        } finally {
            vm.detach();
        }
    }

    static Map<String, Long> counts(MBeanServerConnection s) throws Exception {
        Map<String, Long> m = new HashMap<>();
        for (ObjectName n : s.queryNames(new ObjectName("kafka.network:type=RequestMetrics,name=RequestsPerSec,*"), null))
            m.merge("requests " + n.getKeyProperty("request"), count(s, n), Long::sum);
        for (ObjectName n : s.queryNames(new ObjectName("kafka.server:type=BrokerTopicMetrics,name=*"), null))
            if (n.getKeyProperty("topic") == null)
                m.put("all topics " + n.getKeyProperty("name"), count(s, n));
        return m;
    }

    static long count(MBeanServerConnection s, ObjectName n) {
        try {
            return ((Number) s.getAttribute(n, "Count")).longValue();
        } catch (Exception e) { // a meter without a count: not ours to read
            return 0;
        }
    }
}
