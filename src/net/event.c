/* SPDX-License-Identifier: MIT */
#include "event.h"

#include "common/util.h"

/*
 * Both columns are user-visible and stay as they were: the log's words are what users grep
 * in stderr and the sandbox log, the RPC's mirror HTTP methods as the published Matchlock
 * tool's network events do (a relayed TCP connection is a CONNECT).
 */
static const struct {
	const char *log;
	const char *rpc;
} net_event_names[] = {
	[NET_EV_DNS] = { "DNS", "DNS" },
	[NET_EV_CONNECT] = { "connect", "CONNECT" },
	[NET_EV_HTTP] = { "HTTP", "HTTP" },
	[NET_EV_REQUEST] = { "request", "HTTPS" },
	[NET_EV_SECRET_LEAK] = { "secret_leak", "HTTPS" },
};
STATIC_ASSERT_TABLE(net_event_names, NET_EV_END);

const char *net_event_log_name(enum net_event_kind kind)
{
	return (unsigned)kind < NET_EV_END ? net_event_names[kind].log : "?";
}

const char *net_event_rpc_method(const struct net_event *ev)
{
	if (ev->req && ev->req->method)
		return ev->req->method;
	return (unsigned)ev->kind < NET_EV_END ? net_event_names[ev->kind].rpc : "?";
}
