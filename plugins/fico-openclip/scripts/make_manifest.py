"""Regenerate src/fico_openclip/architectures.json from the installed open_clip.

    .venv/bin/python plugins/fico-openclip/scripts/make_manifest.py

Run it after upgrading open_clip_torch; the test suite fails until the manifest matches.
"""

from __future__ import annotations

from fico_openclip.manifest import MANIFEST_PATH, build_manifest, dumps


def main() -> None:
    manifest = build_manifest()
    MANIFEST_PATH.write_text(dumps(manifest))
    n_tags = sum(len(a["pretrained"]) for a in manifest["architectures"])
    print(
        f"wrote {MANIFEST_PATH}: {len(manifest['architectures'])} architectures, {n_tags} pretrained tags "
        f"(open_clip {manifest['open_clip_version']})"
    )


if __name__ == "__main__":
    main()
