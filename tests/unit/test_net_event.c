/* SPDX-License-Identifier: MIT */
/* The one name table of egress decisions: the words the log and the RPC's events show. */
#include <string.h>

#include "check.h"
#include "net/event.h"

/* Every kind has both words; the ones users see today stay as they are. */
static void test_names(void)
{
	for (int k = 0; k < NET_EV_END; k++) {
		struct net_event ev = { .kind = (enum net_event_kind)k };
		CHECK(strcmp(net_event_log_name((enum net_event_kind)k), "?") != 0);
		CHECK(strcmp(net_event_rpc_method(&ev), "?") != 0);
	}
	struct net_event conn = { .kind = NET_EV_CONNECT };
	CHECK(!strcmp(net_event_log_name(NET_EV_CONNECT), "connect"));
	CHECK(!strcmp(net_event_rpc_method(&conn), "CONNECT"));
	CHECK(!strcmp(net_event_log_name(NET_EV_DNS), "DNS"));
	CHECK(!strcmp(net_event_log_name(NET_EV_SECRET_LEAK), "secret_leak"));
	CHECK(!strcmp(net_event_log_name(NET_EV_END), "?"));
	struct net_event bad = { .kind = NET_EV_END };
	CHECK(!strcmp(net_event_rpc_method(&bad), "?"));
}

/* An intercepted request's event carries its HTTP method. */
static void test_request_method(void)
{
	struct net_request q = { .method = "POST", .url = "https://a.test/" };
	struct net_event ev = { .kind = NET_EV_REQUEST, .req = &q };
	CHECK(!strcmp(net_event_rpc_method(&ev), "POST"));
	ev.req = NULL;
	CHECK(!strcmp(net_event_rpc_method(&ev), "HTTPS"));
}

int main(int argc, char **argv)
{
	check_init(argc, argv);
	CHECK_RUN(test_names);
	CHECK_RUN(test_request_method);
	return check_summary();
}
