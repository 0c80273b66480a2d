#!/bin/busybox sh
# pexi placeholder guest init: stands in for pexi-guest in tests of the image builder
# (tests/integration/test_image.py). It does the two jobs pexi-guest will do, the shell way:
#   stage 1 (PID 1 in the initramfs): load /modules/order, mount /dev/vda read-only, switch root;
#   stage 2 (PID 1 in the Debian root): report what the image holds, then power off.
# Every report line starts with "pexi-placeholder:" on the console. Kernel command line:
#   pexi.keyprobe=TEXT   a fragment of the CA key that must be found nowhere in the image
B=/bin/busybox
say() { echo "pexi-placeholder: $*"; }

if [ "$1" != "stage2" ]; then
  $B mount -t devtmpfs devtmpfs /dev
  $B mount -t proc proc /proc
  $B mount -t sysfs sysfs /sys
  say "stage1 kernel $($B uname -r)"
  loaded=0
  total=0
  while read -r module; do
    total=$((total + 1))
    if $B insmod "/modules/$module"; then
      loaded=$((loaded + 1))
    else
      say "insmod $module failed"
    fi
  done < /modules/order
  say "modules $loaded/$total"
  tries=0
  while [ ! -b /dev/vda ] && [ $tries -lt 50 ]; do
    $B sleep 0.1
    tries=$((tries + 1))
  done
  $B mkdir -p /newroot
  if ! $B mount -t ext4 -o ro /dev/vda /newroot; then
    say "FAIL cannot mount /dev/vda"
    $B poweroff -f
  fi
  # The root is read-only and has no busybox: stage 2 runs busybox from a tmpfs on /run.
  $B mount -t tmpfs -o mode=0755 tmpfs /newroot/run
  $B cp /bin/busybox /newroot/run/busybox
  $B mount --move /dev /newroot/dev
  $B mount --move /proc /newroot/proc
  $B mount --move /sys /newroot/sys
  exec $B switch_root /newroot /run/busybox sh /usr/sbin/pexi-guest stage2
fi

B=/run/busybox
say "stage2 root $($B awk '$2 == "/" { print $3, $4 }' /proc/mounts | $B cut -d, -f1)"
say "links $($B ip -o link show | $B awk -F': ' '{ print $2 }' | $B tr '\n' ' ')"
say "routes [$($B ip route show | $B tr '\n' ' ')]"
if command -v curl > /dev/null; then say "curl $(curl --version | $B head -n 1 | $B cut -d' ' -f1-2)"; fi
# The image holds no CA: each boot brings the PEP's CA certificate (docs/vm.md, "Boot archive").
if [ -e /etc/pexi/ca.pem ]; then say "ca in image"; else say "no ca in image"; fi
set -a
. /etc/environment
set +a
say "env HTTPS_PROXY=$HTTPS_PROXY NO_PROXY=$NO_PROXY"
# With the proxy variables set, curl must try the (absent) relay on 127.0.0.1:3128.
say "curl via proxy: $(curl -sS -m 5 https://example.com/ 2>&1 | $B head -n 1)"
say "user $($B id sandbox 2>&1)"
say "hostname $($B cat /etc/hostname)"
[ -d /workspace ] && say "workspace dir present"
say "bash $(bash -c 'echo $BASH_VERSION')"
probe=$($B sed -n 's/.*pexi\.keyprobe=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "$probe" ]; then
  hits=$($B grep -rlF -e "$probe" /bin /boot /etc /home /lib /opt /root /sbin /srv /usr /var /workspace 2> /dev/null | $B head -n 3)
  if [ -z "$hits" ]; then say "keyprobe absent"; else say "keyprobe FOUND in $hits"; fi
fi
say "done"
$B sync
$B poweroff -f
