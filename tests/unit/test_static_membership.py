"""The daemon's static group member id: stable per checkpoint directory, settable, switchable off."""

import re
import socket

import pytest

from fraudstream.config import load_settings
from fraudstream.daemon.app import group_instance_id
from fraudstream.errors import ConfigInvalid


def settings_for(tmp_path, kafka: str = "", directory: str = "ckpt"):
    path = tmp_path / "cfg.yaml"
    path.write_text(f"kafka:\n  group_id: g\n{kafka}checkpoints:\n  directory: {tmp_path / directory}\n")
    return load_settings(path)


def test_auto_id_is_the_host_and_a_hash_of_the_checkpoint_directory(tmp_path):
    first = group_instance_id(settings_for(tmp_path))
    assert first == group_instance_id(settings_for(tmp_path)), "a restart must rejoin as the same member"
    assert first != group_instance_id(settings_for(tmp_path, directory="other"))
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())
    assert first.startswith(f"{host}-")
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,249}", first)


def test_the_same_directory_by_another_path_is_the_same_member(tmp_path):
    (tmp_path / "ckpt").mkdir()
    assert group_instance_id(settings_for(tmp_path)) == group_instance_id(settings_for(tmp_path, directory="./x/../ckpt"))


def test_an_id_set_by_the_user_is_used_as_it_is(tmp_path):
    assert group_instance_id(settings_for(tmp_path, "  group_instance_id: scorer-3\n")) == "scorer-3"


def test_null_means_a_dynamic_member_in_the_file_and_in_the_environment(tmp_path, monkeypatch):
    assert group_instance_id(settings_for(tmp_path, "  group_instance_id: null\n")) is None
    monkeypatch.setenv("FRAUDSTREAM__KAFKA__GROUP_INSTANCE_ID", "null")
    assert group_instance_id(settings_for(tmp_path)) is None


def test_an_id_kafka_would_refuse_names_the_key(tmp_path):
    with pytest.raises(ConfigInvalid, match="kafka.group_instance_id"):
        settings_for(tmp_path, "  group_instance_id: 'two words'\n")
