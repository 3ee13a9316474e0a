package compile

// For the external test package of this directory: the agreement test's
// random clusters and its trace of a flow across nodes, which
// explain_agree_test.go checks nftpolicy explain against.
var (
	RandomObjects = randomObjects
	KernelAllows  = kernelAllows
)
