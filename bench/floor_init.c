/* The boot floor: an /init that resets the VM at once (reboot=t + -no-reboot end QEMU). */
#include <sys/reboot.h>
#include <unistd.h>

int main(void)
{
	reboot(RB_AUTOBOOT);
	for (;;)
		pause();
}
