"""`sumctl models`: the bundles sumctl knows about."""

from __future__ import annotations

import os

import click

from sumctl.runtime.models import MODEL_ENV, resolve_model
from sumctl.runtime.store import installed_models, models_dir
from sumctl.runtime.jsonout import strict_dumps


@click.group()
def models():
    """List installed model bundles and show where they live."""


@models.command("list")
def list_models():
    """Installed bundles (folders under `sumctl models path`) and the default."""
    bundles = installed_models()
    if not bundles:
        click.echo(f"No installed models in {models_dir()}.")
    for b in bundles:
        m = b.manifest
        click.echo(f"{b.path.name}\t{m.backend}\t{m.quantization}\t{m.source.get('model')}"
                   + (f"\t({m.label})" if m.label else ""))
    default = resolve_model(None, verify=False)
    chosen = f"${MODEL_ENV}" if os.environ.get(MODEL_ENV) else "embedded default"
    click.echo(f"Default ({chosen}): {default.display_name} [{default.path}]")
    adapter = default.manifest.source.get("adapter")
    if adapter:
        scores = (default.manifest.source.get("scores") or {}).get("rouge", {})
        lsum = scores.get("rougeLsum", {}).get("mean")
        merge = default.manifest.source.get("merge")
        click.echo(f"  adapter {adapter.get('file')} (sha256 {str(adapter.get('sha256'))[:12]}), "
                   + (f"merged into the weights as {merge.get('type')}, " if merge else "")
                   + f"fine-tuned by `{(default.manifest.source.get('recipe') or {}).get('command', '?')}`"
                   + (f"; ROUGE-Lsum {lsum:.1f} on QMSum val specific" if lsum is not None else ""))


@models.command("path")
def models_path():
    """Print the folder where named bundles live."""
    click.echo(str(models_dir()))


@models.command("show")
@click.argument("model")
def show_model(model):
    """Print a bundle's manifest after checking its file hashes."""
    bundle = resolve_model(model, verify=True)
    click.echo(strict_dumps(bundle.manifest.to_dict(), indent=2))


def register(cli: click.Group) -> None:
    cli.add_command(models)
