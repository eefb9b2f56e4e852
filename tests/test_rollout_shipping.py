"""Packing what an actor needs: round trip, content hash, refusals."""

import pytest

from meds3.rollout.shipping import Shipment, dir_sha256, files_sha256, pack_dir, unpack_dir


def test_pack_unpack_round_trip_and_hash(tmp_path):
    (tmp_path / "a" / "sub").mkdir(parents=True)
    (tmp_path / "a" / "adapter_config.json").write_text("{}")
    (tmp_path / "a" / "sub" / "w.bin").write_bytes(b"\x00\x01")
    files = pack_dir(tmp_path / "a")
    assert files == {"adapter_config.json": b"{}", "sub/w.bin": b"\x00\x01"}
    copy = unpack_dir(files, "meds3-test-")
    assert pack_dir(copy) == files and dir_sha256(copy) == dir_sha256(str(tmp_path / "a")) == files_sha256(files)
    (tmp_path / "a" / "sub" / "w.bin").write_bytes(b"\x00\x02")
    assert dir_sha256(str(tmp_path / "a")) != files_sha256(files)  # one byte changes the hash
    assert dir_sha256(None) == ""


def test_refusals(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        pack_dir(tmp_path / "missing")
    with pytest.raises(ValueError, match="outside"):
        unpack_dir({"../escape.txt": b"x"}, "meds3-test-")


def test_shipment_localizes_the_config(tmp_path):
    from meds3.rollout import RolloutConfig

    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    config = RolloutConfig(adapter=str(tmp_path / "adapter"))
    shipment = Shipment.for_config(config)
    assert shipment.prm is None and shipment.adapter_sha256 == dir_sha256(config.adapter)
    local = shipment.localize(config)
    assert local.adapter != config.adapter and pack_dir(local.adapter) == pack_dir(config.adapter)
    assert Shipment.for_config(RolloutConfig()).localize(RolloutConfig()) == RolloutConfig()
