package nat

// Every kernel object name ftpgate uses lives here, so that a reader can see
// at a glance what ftpgate creates and what it only touches.
const (
	// OwnTable is the table ftpgate creates in own-table mode, family inet,
	// with the owner flag: the kernel deletes it when ftpgate exits.
	OwnTable = "ftpgate"
	// ownTableFamily is the family of OwnTable, as nft spells it.
	ownTableFamily = "inet"
	// ownSet4 and ownSet6 are the pinhole sets inside OwnTable.
	ownSet4 = "pinholes4"
	ownSet6 = "pinholes6"
	// ownChainInput is the input base chain inside OwnTable that keeps the
	// data port ranges closed except for pinholes and established flows.
	ownChainInput = "input"

	// Interception objects inside OwnTable (Config.Intercept):
	//
	// ownChainPrerouting is the nat prerouting chain (priority dstnat):
	// diverted pinholes, and in redirect mode the redirect rule.
	ownChainPrerouting = "prerouting"
	// ownChainTProxy is the filter prerouting chain (priority mangle) of
	// tproxy mode: the socket-transparent rule and the tproxy rule.
	ownChainTProxy = "tproxy"
	// ownChainOutput is the nat output chain (priority -100, dstnat) of
	// Intercept.Output: this host's own connections.
	ownChainOutput = "output"
	// ownMapDivert4 and ownMapDivert6 map a diverted flow (peer . intercept
	// address . intercept port) to ftpgate's local address and port.
	ownMapDivert4 = "divert4"
	ownMapDivert6 = "divert6"
	// ownSetSources4/6 and ownSetExclude4/6 are the interval sets of
	// Intercept.Sources and Intercept.Exclude.
	ownSetSources4 = "intercept_sources4"
	ownSetSources6 = "intercept_sources6"
	ownSetExclude4 = "intercept_exclude4"
	ownSetExclude6 = "intercept_exclude6"
	// ownSetInterfaces holds Intercept.Interfaces when there are several.
	ownSetInterfaces = "intercept_interfaces"

	// Kernel-forwarded data flows inside OwnTable (Config.Flows):
	//
	// ownChainFlowPre (nat prerouting, just before dstnat) DNATs an
	// expected flow by ownMapFlowDNAT4/6 (peer . local address . port ->
	// target address . port); ownChainFlowPost (nat postrouting, srcnat)
	// SNATs it by ownMapFlowSNAT4/6 (peer . target address . port ->
	// source address); ownChainFlowForward (filter forward) sends the SYN,
	// FIN and RST packets and one in 256 to ownChainFlowLog, which logs
	// those of the flows in ownSetFlowLog4/6 (conntrack's original peer .
	// local address . port) to the flow log.
	ownChainFlowPre     = "flow_prerouting"
	ownChainFlowPost    = "flow_postrouting"
	ownChainFlowForward = "flow_forward"
	ownChainFlowLog     = "flow_log"
	ownMapFlowDNAT4     = "flow_dnat4"
	ownMapFlowDNAT6     = "flow_dnat6"
	ownMapFlowSNAT4     = "flow_snat4"
	ownMapFlowSNAT6     = "flow_snat6"
	ownSetFlowLog4      = "flow_log4"
	ownSetFlowLog6      = "flow_log6"

	// DefaultExternalFamily is the family of the operator's table in
	// external-set mode when Config.Family is empty.
	DefaultExternalFamily = "inet"
	// DefaultSet4 and DefaultSet6 are the operator's set names in
	// external-set mode when Config.Set4 / Config.Set6 are empty.
	DefaultSet4 = "ftpgate_pinholes4"
	DefaultSet6 = "ftpgate_pinholes6"
)

// Key types of the pinhole sets, as nft prints them. A pinhole is
// (peer address . local address . local port).
const (
	keyType4 = "ipv4_addr . ipv4_addr . inet_service"
	keyType6 = "ipv6_addr . ipv6_addr . inet_service"
)
