"""make bench-scale's pure parts (tests/bench/scale.py, tests/bench/fake_cluster.py): the
fake cluster's shape and pages, the federate copies, what is read from a Prometheus's own
metrics and summarised, and each instance's configuration."""
import multiprocessing
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.collector import TASK_SERIES
from tests.bench import fake_cluster, scale
from tests.bench.fake_cluster import (Cluster, ExporterPage, HotSwitch, Ports, Shape, Task, copy_values,
                                      exporter_lines, opted_in_page, receiver_page, rewrite_federate)

TASK_LABELS = {"service", "task_id", "node_id"}


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


# ---------------------------------------------------------------- the cluster's shape

def test_tasks_are_dealt_evenly_with_the_opted_in_share_on_every_node_and_replicas_on_different_nodes():
    cluster = Cluster(Shape(10_000, 50))
    assert sum(len(n.tasks) for n in cluster.nodes) == 10_000
    assert {len(n.tasks) for n in cluster.nodes} == {200}
    assert {sum(t.opted_in for t in n.tasks) for n in cluster.nodes} == {10}
    assert sum(cluster.opted_in.values()) == 500
    for service in cluster.opted_in:
        nodes = [n.name for n in cluster.nodes for t in n.tasks if t.service == service]
        assert len(nodes) == len(set(nodes)) == fake_cluster.OPTED_IN_REPLICAS
    assert len({t.task_id for n in cluster.nodes for t in n.tasks}) == 10_000


def test_the_representative_node_is_a_worker_with_an_opted_in_task_to_make_hot():
    cluster = Cluster(Shape(500, 20))
    assert [n.role for n in cluster.nodes[:4]] == ["manager"] * 3 + ["worker"]
    assert cluster.representative.role == "worker"
    assert cluster.hot_task.opted_in and cluster.hot_task in cluster.representative.tasks


def test_swarm_ids_look_like_swarm_s_and_do_not_change_between_runs():
    assert fake_cluster.swarm_id("task", 7) == fake_cluster.swarm_id("task", 7) != fake_cluster.swarm_id("node", 7)
    assert len(fake_cluster.swarm_id("task", 7)) == 25 and fake_cluster.swarm_id("task", 7).isalnum()


def test_a_cluster_needs_a_task_per_node():
    with pytest.raises(ValueError, match="a task per node"):
        Cluster(Shape(3, 4))


# ---------------------------------------------------------------- pages

TASKS = (Task("web", "t1", "n1", True), Task("batch", "t2", "n1", False))


def test_a_node_s_exporter_page_publishes_the_exporter_s_task_series_with_their_types_and_labels():
    found = families("".join(exporter_lines(TASKS, 1_700_000_000.0)))
    for name, kind, _ in TASK_SERIES:
        family = found[name.removesuffix("_total")]
        assert family.type == kind
        assert [set(s.labels) for s in family.samples] == [TASK_LABELS, TASK_LABELS]
    assert found["swarmguard_task_start_time_seconds"].samples[0].value == 1_700_000_000.0
    assert found["swarmguard_exporter_docker_up"].samples[0].value == 1
    assert set(found) == {n.removesuffix("_total") for n, _, _ in TASK_SERIES} | {"swarmguard_exporter_docker_up"}


def test_the_pre_rendered_page_is_the_rendered_page_with_only_the_hot_task_s_counter_changed():
    page = ExporterPage(TASKS, 1_700_000_000.0, dynamic=TASKS[0])
    assert page.body() == "".join(exporter_lines(TASKS, 1_700_000_000.0)).encode()
    assert page.body(99.25) == "".join(exporter_lines(TASKS, 1_700_000_000.0, {"t1": 99.25})).encode()
    cpu = families(page.body(99.25).decode())["swarmguard_task_cpu_seconds"].samples
    assert [(s.labels["task_id"], s.value) for s in cpu] == [("t1", 99.25), ("t2", fake_cluster.IDLE_VALUES[
        fake_cluster.CPU_COUNTER])]


def test_an_idle_page_ignores_a_counter_when_no_task_is_dynamic():
    page = ExporterPage(TASKS, 1.0)
    assert page.body(5.0) == page.body()


def test_a_manager_s_opted_in_page_counts_each_opted_in_service_s_running_tasks():
    found = families(opted_in_page({"web": 3, "api": 1}))
    assert {s.labels["service"]: s.value for s in found["swarmguard_opted_in_service_tasks"].samples} == {
        "web": 3, "api": 1}
    assert found["swarmguard_exporter_opt_in_known"].samples[0].value == 1


def test_the_receiver_s_page_counts_opted_in_tasks_per_service_and_node_and_every_node_ready():
    cluster = Cluster(Shape(40, 4))
    found = families(receiver_page(cluster))
    tasks = found["swarmguard_service_tasks"].samples
    assert sum(s.value for s in tasks) == cluster.shape.opted_in_tasks
    assert {s.labels["service"] for s in tasks} == set(cluster.opted_in)
    assert {(s.labels["node"], s.labels["role"]) for s in found["swarmguard_node_ready"].samples} == {
        (n.name, n.role) for n in cluster.nodes}
    assert found["swarmguard_receiver_docker_up"].samples[0].value == 1


# ---------------------------------------------------------------- federate copies

FEDERATED = """# TYPE swarmguard:task_cpu:percent untyped
swarmguard:task_cpu:percent{instance="127.0.0.1:19104",job="swarmguard-exporter",node="node-03",node_id="N3",service="optin-0003",task_id="T3a"} 0 1764890000000
# TYPE up untyped
up{instance="127.0.0.1:19104",job="swarmguard-exporter",node="node-03"} 1 1764890000500
swarmguard:node_tasks:count{node="node-03",odd="a \\"quoted\\" node-03"} 50 1764890001000
"""


def test_a_federate_copy_rewrites_label_values_only():
    values = {"node-03": "node-01", "N3": "N1", "T3a": "T1a", "optin-0003": "optin-0001",
              "127.0.0.1:19104": "127.0.0.1:19102"}
    assert rewrite_federate(FEDERATED, values) == """# TYPE swarmguard:task_cpu:percent untyped
swarmguard:task_cpu:percent{instance="127.0.0.1:19102",job="swarmguard-exporter",node="node-01",node_id="N1",service="optin-0001",task_id="T1a"} 0 1764890000000
# TYPE up untyped
up{instance="127.0.0.1:19102",job="swarmguard-exporter",node="node-01"} 1 1764890000500
swarmguard:node_tasks:count{node="node-01",odd="a \\"quoted\\" node-03"} 50 1764890001000
"""


def test_a_copy_maps_the_representative_s_tasks_to_the_other_node_s_opted_in_first():
    cluster = Cluster(Shape(100, 4))
    source, target = cluster.representative, cluster.nodes[1]
    ports = Ports(19100)
    address = {n.index: ports.address(n.index) for n in cluster.nodes}
    values = copy_values(source, target, address)
    assert values[source.name] == target.name and values[source.node_id] == target.node_id
    assert values[ports.address(source.index)] == ports.address(target.index)
    by_id = {t.task_id: t for t in target.tasks}
    for task in source.tasks:
        assert by_id[values[task.task_id]].opted_in == task.opted_in
    assert values[cluster.hot_task.service] in cluster.opted_in


# ---------------------------------------------------------------- the hot task

def test_the_hot_task_s_counter_rises_at_its_limit_while_hot_and_stays_after():
    hot = HotSwitch(multiprocessing.get_context("spawn"), limit_cores=0.5)
    idle = hot.cpu_seconds(100.0)
    hot.heat(100.0)
    hot.heat(102.0)  # already hot: the start stays
    assert hot.cpu_seconds(104.0) == idle + 2.0
    hot.cool(106.0)
    assert hot.cpu_seconds(200.0) == idle + 3.0


# ---------------------------------------------------------------- a Prometheus's own metrics

SELF_METRICS = """# HELP prometheus_rule_group_last_duration_seconds The duration of the last rule group evaluation.
prometheus_rule_group_last_duration_seconds{rule_group="/w/rules/swarmguard.yml;swarmguard-detection"} 0.0123
prometheus_rule_group_last_duration_seconds{rule_group="/w/rules/swarmguard-health.yml;swarmguard-health"} 0.002
prometheus_rule_group_last_evaluation_timestamp_seconds{rule_group="/w/rules/swarmguard.yml;swarmguard-detection"} 1.7648900005e+09
prometheus_rule_group_interval_seconds{rule_group="/w/rules/swarmguard.yml;swarmguard-detection"} 0.5
prometheus_rule_group_iterations_missed_total{rule_group="/w/rules/swarmguard.yml;swarmguard-detection"} 3
prometheus_rule_group_iterations_total{rule_group="/w/rules/swarmguard.yml;swarmguard-detection"} 40
prometheus_rule_group_duration_seconds{quantile="0.5"} 0.01
prometheus_tsdb_head_samples_appended_total{type="float"} 1000
prometheus_tsdb_head_samples_appended_total{type="histogram"} 24
prometheus_tsdb_head_series 512
"""


def test_an_instance_s_own_metrics_give_each_group_s_last_evaluation_and_the_samples_appended():
    reading = scale.read_self_metrics(SELF_METRICS)
    assert reading["groups"]["swarmguard-detection"] == {
        "duration_s": 0.0123, "evaluated_at": 1_764_890_000.5, "interval_s": 0.5, "missed": 3, "iterations": 40}
    assert reading["groups"]["swarmguard-health"] == {"duration_s": 0.002}
    assert reading["samples_appended"] == 1024 and reading["head_series"] == 512


def test_a_group_s_summary_counts_each_evaluation_once_and_missed_ones_per_minute():
    evaluations = {1.0: 0.1, 1.5: 0.3, 2.0: 0.7, 2.5: 0.2}
    summary = scale.group_summary(evaluations, 0.5, missed=4, seconds=30)
    assert summary == {"evaluations": 4, "interval_ms": 500, "p50_ms": 250, "p95_ms": 700, "max_ms": 700,
                       "over_interval": 1, "missed_per_minute": 8}


def test_a_group_without_evaluations_in_the_window_has_no_statistics():
    summary = scale.group_summary({}, None, missed=0, seconds=30)
    assert summary["evaluations"] == 0 and summary["p50_ms"] is None and summary["over_interval"] is None


# ---------------------------------------------------------------- configurations

MAIN_CONFIG = {
    "global": {"scrape_interval": "500ms", "scrape_timeout": "500ms", "evaluation_interval": "1s",
               "external_labels": {"cluster": "x"}},
    "scrape_configs": [
        {"job_name": "swarmguard-exporter", "dockerswarm_sd_configs": [{"host": "unix:///d"}],
         "relabel_configs": [{"action": "keep"}]},
        {"job_name": "swarmguard-opt-in", "metrics_path": "/opted-in", "scrape_interval": "5s",
         "dockerswarm_sd_configs": [{"host": "unix:///d"}]},
        {"job_name": "alertmanager", "scrape_interval": "5s", "basic_auth": {"username": "u"}},
    ]}
RULES = {"swarmguard-thresholds.yml": "t", "swarmguard.yml": "d", "swarmguard-scale-down.yml": "s",
         "swarmguard-health.yml": "h"}


def configure(layout, instance_name, shape=Shape(40, 4), configs=None):
    source = scale.Source("test", configs or {"prometheus.yml": MAIN_CONFIG}, RULES)
    layout = scale.LAYOUTS[layout]
    instance = next(i for i in layout.instances if i.name == instance_name)
    wiring = scale.Wiring(Ports(19100), 19450, {i.name: 19400 + k for k, i in enumerate(layout.instances)})
    return scale.prometheus_config(source, instance, Cluster(shape), wiring, Path("/w/rules"))


def test_a_single_instance_scrapes_every_exporter_and_the_managers_opted_in_with_the_files_settings():
    config = configure("central-opted-in", "prometheus")
    assert config["global"] == {"scrape_interval": "500ms", "scrape_timeout": "500ms", "evaluation_interval": "1s"}
    assert config["rule_files"] == [f"/w/rules/{n}" for n in sorted(RULES)]
    assert config["alerting"]["alertmanagers"][0]["static_configs"] == [{"targets": ["127.0.0.1:19450"]}]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    exporter = jobs["swarmguard-exporter"]
    assert exporter == {"job_name": "swarmguard-exporter", "scrape_interval": "500ms", "scrape_timeout": "500ms",
                        "static_configs": [{"targets": [f"127.0.0.1:{19101 + j}"],
                                            "labels": {"instance": f"node-0{j}", "node": f"node-0{j}"}}
                                           for j in range(4)]}
    opt_in = jobs["swarmguard-opt-in"]
    assert opt_in["metrics_path"] == "/opted-in" and opt_in["scrape_interval"] == "5s"
    assert [t["labels"]["node"] for t in opt_in["static_configs"]] == ["node-00", "node-01", "node-02"]
    assert "basic_auth" not in jobs["alertmanager"]
    assert jobs["prometheus"]["static_configs"] == [{"targets": ["127.0.0.1:19400"]}]


def test_the_per_node_instance_scrapes_only_its_node_s_exporter_and_loads_thresholds_and_detection():
    config = configure("per-node", "node")
    assert config["rule_files"] == ["/w/rules/swarmguard-thresholds.yml", "/w/rules/swarmguard.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"swarmguard-exporter", "swarmguard-opt-in"}
    assert jobs["swarmguard-exporter"]["static_configs"] == [{"targets": ["127.0.0.1:19104"],
                                                              "labels": {"instance": "node-03", "node": "node-03"}}]


def test_the_central_instance_federates_every_node_and_keeps_their_labels():
    config = configure("per-node", "central")
    assert config["rule_files"] == [f"/w/rules/{n}" for n in (
        "swarmguard-health.yml", "swarmguard-scale-down.yml", "swarmguard-thresholds.yml")]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    federation = jobs[scale.JOB_DEFAULTS[scale.FEDERATION]["job_name"]]
    assert federation["metrics_path"] == "/federate" and federation["honor_labels"] is True
    assert federation["params"]["match[]"] == scale.FEDERATE_MATCH
    assert len(federation["static_configs"]) == 4
    assert "swarmguard-exporter" not in jobs


DETECTION_TEMPLATE = """
global: {scrape_interval: 250ms, scrape_timeout: 250ms}
scrape_configs:
  - job_name: swarmguard-exporter
    relabel_configs:
      - source_labels: [__meta_dockerswarm_node_id]
        modulus: {{ env "SWARMGUARD_DETECTION_INSTANCES" }}
        action: hashmod
      - regex: '{{ .Task.Slot }}'
        action: keep
"""


def test_the_per_node_instance_takes_its_own_file_s_settings_first_a_swarm_template_s_too():
    configs = {"prometheus.yml": MAIN_CONFIG, "prometheus-detection.yml": scale.parse_config(DETECTION_TEMPLATE)}
    node = {job["job_name"]: job for job in configure("per-node", "node", configs=configs)["scrape_configs"]}
    assert node["swarmguard-exporter"]["scrape_interval"] == "250ms"
    assert node["swarmguard-opt-in"]["scrape_interval"] == "5s"  # only in the main file
    single = configure("central-opted-in", "prometheus", configs=configs)
    assert single["global"]["scrape_interval"] == "500ms"


def test_a_federation_job_is_found_by_its_path_whatever_its_name():
    configs = {"prometheus.yml": {**MAIN_CONFIG, "scrape_configs": [
        {"job_name": "feds", "metrics_path": "/federate", "honor_labels": True, "params": {"match[]": ["up"]}}]}}
    jobs = {job["job_name"]: job for job in configure("per-node", "central", configs=configs)["scrape_configs"]}
    assert jobs["feds"]["params"] == {"match[]": ["up"]} and jobs["feds"]["scrape_interval"] == "500ms"


def test_a_layout_naming_a_rule_file_the_source_lacks_fails_before_anything_starts():
    source = scale.Source("test", {}, {"swarmguard-health.yml": "h"})
    with pytest.raises(scale.BenchError, match="no rules/swarmguard-detection.yml or rules/swarmguard.yml"):
        source.rule_texts((scale.THRESHOLDS, scale.DETECTION)[1:])


def test_steps_are_tasks_by_nodes():
    assert scale.parse_steps("500x20, 10000x50") == [Shape(500, 20), Shape(10_000, 50)]
    with pytest.raises(Exception, match="TASKSxNODES"):
        scale.parse_steps("500")
