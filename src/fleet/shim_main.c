/* shim_main.c: the launch shim as its own tiny program (libc only), which
 * the mothership binary embeds and runs from a memfd, so that the process
 * kept beside every ship costs ~100 KiB instead of a whole Mothership's
 * libraries. See shim.h. */
#include <string.h>

#include "fleet/shim.h"

int main(int argc, char **argv)
{
    return ms_shim_main(argc, argv);
}
