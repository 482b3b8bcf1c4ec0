"""Configuration: defaults, file, environment, and errors that say where."""

from __future__ import annotations

import pytest

from pulse.config import ConfigError, PulseConfig, load_config, with_cluster


def write(tmp_path, text):
    p = tmp_path / "pulse.toml"
    p.write_text(text)
    return p


def test_defaults_without_file_or_env():
    assert load_config(None, {}) == PulseConfig()


def test_file_then_env_override(tmp_path):
    p = write(tmp_path, '[kafka]\nbootstrap_servers = "k1:9092"\nevents_topic = "ev"\n'
                        '[kafka.consumer]\n"fetch.wait.max.ms" = 5\n[state]\ndir = "/data"\n')
    cfg = load_config(p, {"PULSE_KAFKA_EVENTS_TOPIC": "ev2", "PULSE_SERVING_METRICS_PORT": "9999",
                          "PULSE_KAFKA_PRODUCER__LINGER_MS": "3", "PULSE_KAFKA_CREATE_TOPICS": "false",
                          "PULSE_TEST_KAFKA_BOOTSTRAP": "ignored"})
    assert cfg.kafka.bootstrap_servers == "k1:9092"
    assert cfg.kafka.events_topic == "ev2"
    assert cfg.kafka.consumer == {"fetch.wait.max.ms": "5"}
    assert cfg.kafka.producer == {"linger.ms": "3"}
    assert cfg.kafka.create_topics is False
    assert cfg.serving.metrics_port == 9999
    assert str(cfg.store_dir) == "/data/store"


def test_config_file_from_env_variable(tmp_path):
    p = write(tmp_path, '[generator]\nusers = 5\n')
    assert load_config(None, {"PULSE_CONFIG": str(p)}).generator.users == 5


@pytest.mark.parametrize(
    "text, message",
    [
        ('[kafka]\nbootstrap_servers = \n', "pulse.toml:2:21: invalid TOML"),
        ('[kafak]\nx = 1\n', "pulse.toml:1: unknown section [kafak]"),
        ('[kafka]\n\nbatchsize = 5\n', "pulse.toml:3: unknown setting kafka.batchsize"),
        ('[processor]\nmetrics_port = "x"\n', "pulse.toml:2: processor.metrics_port must be an integer"),
        ('[serving]\n# comment\nmetrics_port = 70000\n', "pulse.toml:3: serving.metrics_port = 70000 must be a port"),
        ('[kafka]\ncreate_topics = "yes"\n', "pulse.toml:2: kafka.create_topics must be true or false"),
        ('[kafka]\nconsumer = 3\n', "pulse.toml:2: kafka.consumer must be a table"),
        ('[state]\ncache_mb = 8\n', "pulse.toml:2: state.cache_mb = 8 must be at least 16"),
        ('[state]\nwrite_buffer_mb = 2\n', "pulse.toml:2: state.write_buffer_mb = 2 must be between 4 and 4096"),
        ('[processor]\naddresses = "127.0.0.1:2101,127.0.0.1"\n',
         "pulse.toml:2: processor.addresses = '127.0.0.1:2101,127.0.0.1': '127.0.0.1' is not host:port"),
        ('[processor]\naddresses = "a:1,a:1"\n', "pulse.toml:2: processor.addresses = 'a:1,a:1': an address is listed twice"),
        ('[processor]\naddresses = "a:1,b:1"\nprocess_id = 2\n',
         "pulse.toml:3: processor.process_id = 2 must be in 0..1 (an index into processor.addresses)"),
        ('[processor]\nprocess_id = 1\n', "pulse.toml:2: processor.process_id = 1 must be in 0..0"),
    ],
)
def test_bad_file_names_file_line_and_problem(tmp_path, text, message):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(p, {})
    assert message in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(tmp_path / "nope.toml", {})


@pytest.mark.parametrize(
    "env, message",
    [
        ({"PULSE_SERVING_METRICS_PORT": "abc"}, "PULSE_SERVING_METRICS_PORT: expected int"),
        ({"PULSE_KAFKA_NOPE": "1"}, "PULSE_KAFKA_NOPE: unknown setting kafka.nope"),
        ({"PULSE_NOPE_X": "1"}, "PULSE_NOPE_X: unknown section"),
        ({"PULSE_PROCESSOR_WORKERS": "0"}, "environment variable PULSE_PROCESSOR_WORKERS: processor.workers = 0"),
    ],
)
def test_bad_environment_names_the_variable(env, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, env)
    assert message in str(err.value)


def test_kubernetes_service_links_are_ignored_but_typos_are_not():
    links = {"PULSE_GRPC_SERVICE_HOST": "10.0.0.1", "PULSE_GRPC_PORT": "tcp://10.0.0.1:50051",
             "PULSE_GRPC_PORT_50051_TCP_ADDR": "10.0.0.1", "PULSE_GRPC_SERVICE_PORT_GRPC": "50051"}
    assert load_config(None, links) == PulseConfig()
    with pytest.raises(ConfigError, match="PULSE_SERVNG_METRICS_PORT: unknown section"):
        load_config(None, {"PULSE_SERVNG_METRICS_PORT": "1"})


def test_cluster_from_the_command_line_overrides_and_is_checked_like_the_file(tmp_path):
    cfg = load_config(write(tmp_path, '[processor]\naddresses = "127.0.0.1:2101,[::1]:2102"\n'), {})
    assert cfg.processor.cluster() == ["127.0.0.1:2101", "[::1]:2102"] and cfg.processor.process_id == 0
    assert with_cluster(cfg, None, 1).processor.process_id == 1
    assert with_cluster(cfg, None, None) is cfg
    assert load_config(None, {}).processor.cluster() == []
    with pytest.raises(ConfigError, match="command line: processor.process_id = 2 must be in 0..1"):
        with_cluster(cfg, None, 2)
    with pytest.raises(ConfigError, match="command line: processor.addresses = 'x:0': 'x:0' is not host:port"):
        with_cluster(cfg, "x:0", 0)
