// Package bench measures doorman's Intrusion Monitor against Debian's
// fail2ban on the same simulated attacks, in one run (`task bench`, as
// root): ban latency, attempts answered after the threshold, CPU per 10,000
// failed attempts, restore time of 100,000 permanent bans and the security
// event rate one core absorbs. Everything runs inside network namespaces
// of an integration/harness bed; the package holds only benchmarks.
package bench
