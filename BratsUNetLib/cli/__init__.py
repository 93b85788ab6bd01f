"""The ``bratsunet`` command line: the parser and its error handling (:mod:`.main`), each command as an object that
parses its command line and writes one back (:mod:`.command_line`), each command's flags (:mod:`.arguments`, one
module per command) and its work (one module per command here)."""
