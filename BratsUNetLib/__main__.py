from BratsUNetLib.cli.main import run_console

run_console()
