from BratsUNetLib.cli import run_console

run_console()
