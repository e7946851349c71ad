package asterisksim

// initARI mounts the ARI handler on HTTPAddr once package ari provides it.
func (s *Sim) initARI() {}
