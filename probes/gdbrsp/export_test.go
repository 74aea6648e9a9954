package gdbrsp

// SkipBlank turns Erase's skipping of blank blocks on or off, so that
// tests and benchmarks can compare the two.
func SkipBlank(p *Probe, on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.noSkip = !on
}
