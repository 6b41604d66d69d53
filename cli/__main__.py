from sumctl.cli.main import cli

cli(prog_name="sumctl")
