"""The SDK path never grades with a stale image: the image carries a digest of its build
context, and an image built from other sources is rebuilt, saying so. No engine needed."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import docker
import pytest

from lab import container as lab_container

REPO = Path(lab_container.SOURCE_ROOT)


@pytest.fixture
def context(tmp_path):
    """A small build context: a Dockerfile, .dockerignore, a package file and a test file."""
    root = tmp_path / "checkout"
    (root / "lab").mkdir(parents=True)
    (root / "tests").mkdir()
    shutil.copy(REPO / ".dockerignore", root / ".dockerignore")
    (root / "Dockerfile").write_text("FROM scratch\n")
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (root / "lab" / "cli.py").write_text("print('v1')\n")
    (root / "tests" / "test_x.py").write_text("def test(): pass\n")
    return root


def test_the_digest_follows_what_the_build_sees(context):
    before = lab_container.context_digest(context, {})
    (context / "tests" / "test_x.py").write_text("def test(): assert 1\n")  # not sent (.dockerignore)
    assert lab_container.context_digest(context, {}) == before
    (context / "lab" / "cli.py").write_text("print('v2')\n")
    assert lab_container.context_digest(context, {}) != before


def test_the_digest_follows_the_build_arguments(context):
    assert (lab_container.context_digest(context, {"WITH_ZIG": "1"})
            != lab_container.context_digest(context, {}))


class FakeImages:
    def __init__(self, labels):
        self.labels = labels

    def get(self, tag):
        if self.labels is None:
            raise docker.errors.ImageNotFound(tag)
        return type("Image", (), {"labels": self.labels})()


@pytest.fixture
def builds(monkeypatch, context):
    """ensure_image against a fake engine whose image has the given labels; the builds asked."""
    monkeypatch.setattr(lab_container, "SOURCE_ROOT", context)
    asked = []
    monkeypatch.setattr(lab_container, "build_image",
                        lambda client, *, tag, log, reason, zig: asked.append(reason))

    def ensure(labels, zig=False):
        client = type("Client", (), {"images": FakeImages(labels)})()
        lab_container.ensure_image(client, log=io.StringIO(), zig=zig)
        return asked

    return ensure


def test_an_image_built_from_this_checkout_is_used_as_it_is(builds, context):
    digest = lab_container.context_digest(context, lab_container.build_args())
    assert builds({lab_container.CONTEXT_LABEL: digest}) == []


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        (None, "it is missing"),
        ({lab_container.CONTEXT_LABEL: "0123456789abcdef"}, "built from other sources than this checkout's"),
        ({}, "carries no digest"),
    ],
    ids=["missing", "other-sources", "unlabelled"],
)
def test_a_missing_or_stale_image_is_rebuilt_saying_why(builds, labels, reason):
    (asked,) = builds(labels)
    assert reason in asked


def test_the_image_with_zig_has_a_tag_of_its_own_and_is_fresh_only_when_built_with_zig(builds, context, monkeypatch):
    monkeypatch.delenv("WITH_ZIG", raising=False)
    monkeypatch.delenv(lab_container.ZIG_IMAGE_ENV, raising=False)
    assert lab_container.image_name(zig=True) == "epoll-lab:zig" != lab_container.image_name()
    with_zig = lab_container.context_digest(context, lab_container.build_args(zig=True))
    assert lab_container.build_args(zig=True)["WITH_ZIG"] == "1"
    assert builds({lab_container.CONTEXT_LABEL: with_zig}, zig=True) == []
    # The plain image's digest is not the one with Zig: it would be rebuilt, with Zig.
    plain = lab_container.context_digest(context, lab_container.build_args())
    assert builds({lab_container.CONTEXT_LABEL: plain}, zig=True) != []
