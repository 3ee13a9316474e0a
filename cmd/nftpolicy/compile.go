package main

import (
	"io"
)

func compileCmd(args []string, stdout, stderr io.Writer) int {
	return 2
}
