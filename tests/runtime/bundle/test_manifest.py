import json

import pytest

from sumctl.runtime.bundle import MANIFEST_NAME, load_bundle
from sumctl.runtime.errors import BundleError
from sumctl.runtime.backends.extractive import build_extractive_bundle


@pytest.fixture
def bundle_dir(tmp_path):
    return build_extractive_bundle(tmp_path / "b").path


def test_manifest_records_every_file_hash(bundle_dir):
    manifest = json.loads((bundle_dir / MANIFEST_NAME).read_text())
    assert manifest["files"].keys() == {"extractive.json"}
    assert manifest["format_version"] == 1 and manifest["backend"] == "extractive"
    assert set(manifest["prompts"]) == {"long", "medium", "short"}
    assert load_bundle(bundle_dir).manifest.name == "extractive-baseline"


def test_changed_file_is_refused_by_name(bundle_dir):
    (bundle_dir / "extractive.json").write_text('{"tampered": true}')
    with pytest.raises(BundleError, match=r"extractive\.json: sha256 .* does not match"):
        load_bundle(bundle_dir)


def test_missing_file_and_missing_manifest(bundle_dir, tmp_path):
    (bundle_dir / "extractive.json").unlink()
    with pytest.raises(BundleError, match="missing from the bundle"):
        load_bundle(bundle_dir)
    with pytest.raises(BundleError, match="sumctl.json is missing"):
        load_bundle(tmp_path)
    with pytest.raises(BundleError, match="no such model bundle"):
        load_bundle(tmp_path / "nope")


def test_unknown_format_version_and_garbage_manifest(bundle_dir):
    path = bundle_dir / MANIFEST_NAME
    data = json.loads(path.read_text())
    path.write_text(json.dumps(data | {"format_version": 99}))
    with pytest.raises(BundleError, match="format_version 99 is not supported"):
        load_bundle(bundle_dir)
    path.write_text("{not json")
    with pytest.raises(BundleError, match="unreadable manifest"):
        load_bundle(bundle_dir)


def test_unknown_backend_is_a_clear_error(bundle_dir):
    from sumctl.runtime.summarizer import Summarizer

    path = bundle_dir / MANIFEST_NAME
    path.write_text(json.dumps(json.loads(path.read_text()) | {"backend": "tensorrt"}))
    with pytest.raises(BundleError, match="unknown backend 'tensorrt'"):
        Summarizer(bundle_dir)
