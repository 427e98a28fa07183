// Package deploy holds ftpgate's packaging: the systemd unit, the container
// image build (container/build), the OpenWrt init script and fw4 include,
// example configs and firewall snippets. It has no code of its own; its
// tests run the static ftpgate binary as the packages ship it and prove that
// the packaging works on this machine:
//
//	ftpgate check touches no kernel state       TestCheckTouchesNoKernel
//	as nobody: missing capabilities named       TestRunAsNobodyWithoutCapabilities
//	as nobody with the two ambient caps: runs   TestRunAsNobodyWithAmbientCapabilities
//	systemd unit passes systemd-analyze verify  TestSystemdUnitVerifies
//	systemd unit hardening rates OK or better   TestSystemdUnitSecurity
//	unit grants exactly two capabilities        TestSystemdUnitPrivileges
//	OCI image: config, user, runs version       TestContainerImage
//	cross builds for routers, sizes, arm64 qemu TestApplianceBuilds
//	OpenWrt fw4 include passes nft -c           TestOpenWrtFirewallInclude
//	OpenWrt procd init script parses            TestOpenWrtInitScript
package deploy
