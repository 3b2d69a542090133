package worker

import goruntime "runtime"

func numCPU() int { return goruntime.NumCPU() }
