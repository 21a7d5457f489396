/* The VM: KVM setup, memory, boot, vCPU threads, exits, pause/resume,
 * stop, the I/O thread and the halt watch. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmm/boot.h"
#include "vmm/vmm_int.h"

#define KVM_TSS_ADDR 0xfffbd000ULL
#define KVM_IDMAP_ADDR 0xfffbc000ULL
#define I8042_DATA 0x60
#define I8042_CMD 0x64
#define I8042_RESET 0xfe

static __thread struct kvm_run *tls_run;
static int kick_sig;

static void kick_handler(int sig)
{
	(void)sig;
	if (tls_run)
		tls_run->immediate_exit = 1;
}

static int install_kick_handler(void)
{
	static bool done;
	if (done)
		return 0;
	kick_sig = SIGRTMIN + 3;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	if (sigaction(kick_sig, &sa, NULL) < 0)
		return lt_fail_errno("sigaction");
	done = true;
	return 0;
}

const char *lt_vm_exit_reason_name(enum lt_vm_exit_reason r)
{
	static const char *n[] = {"none", "halt", "reset", "poweroff", "stopped", "error"};
	return (unsigned)r < LT_ARRAY_LEN(n) ? n[r] : "?";
}

void lt_vm_config_init(struct lt_vm_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->mem_bytes = 128ULL << 20;
	cfg->vcpus = 1;
	cfg->serial_out_fd = -1;
	cfg->serial_in_fd = -1;
	cfg->events_fd = -1;
	cfg->vsock_cid = 3;
}

static const char *own(struct lt_vm *vm, const char *s)
{
	if (!s || vm->nowned >= (int)LT_ARRAY_LEN(vm->owned))
		return s ? NULL : NULL;
	char *c = lt_strdup(s);
	if (c)
		vm->owned[vm->nowned++] = c;
	return c;
}

/* ---- memory -------------------------------------------------------------- */

static int map_region(struct lt_vm *vm, struct lt_mem_region *r, int fd)
{
	int flags = MAP_NORESERVE;
	if (vm->cfg.mem_backing == LT_MEM_ANON)
		flags |= MAP_PRIVATE | MAP_ANONYMOUS;
	else
		flags |= vm->cfg.mem_backing == LT_MEM_FILE_SHARED ? MAP_SHARED : MAP_PRIVATE;
	void *p = mmap(NULL, r->size, PROT_READ | PROT_WRITE, flags,
		       vm->cfg.mem_backing == LT_MEM_ANON ? -1 : fd,
		       (off_t)r->file_offset);
	if (p == MAP_FAILED)
		return lt_fail_errno("mmap guest RAM (%llu MiB)",
				     (unsigned long long)(r->size >> 20));
	r->hva = p;
	return 0;
}

static int setup_memory(struct lt_vm *vm)
{
	uint64_t mem = vm->cfg.mem_bytes;
	uint64_t low = mem < LT_VM_MMIO_START ? mem : LT_VM_MMIO_START;
	vm->regions[0] = (struct lt_mem_region){.gpa = 0, .size = low, .slot = 0};
	vm->nregions = 1;
	if (mem > low) {
		vm->regions[1] = (struct lt_mem_region){
			.gpa = LT_VM_HIGH_START, .size = mem - low, .file_offset = low, .slot = 1};
		vm->nregions = 2;
	}
	int fd = -1;
	if (vm->cfg.mem_backing != LT_MEM_ANON) {
		if (!vm->cfg.mem_file)
			return lt_fail("file-backed guest memory needs a file");
		bool shared = vm->cfg.mem_backing == LT_MEM_FILE_SHARED;
		fd = open(vm->cfg.mem_file, (shared ? O_RDWR | O_CREAT : O_RDONLY) | O_CLOEXEC, 0600);
		if (fd < 0)
			return lt_fail_errno("%s", vm->cfg.mem_file);
		struct stat st;
		if (fstat(fd, &st) < 0) {
			close(fd);
			return lt_fail_errno("%s", vm->cfg.mem_file);
		}
		if ((uint64_t)st.st_size < mem) {
			if (!shared || ftruncate(fd, (off_t)mem) < 0) {
				close(fd);
				return lt_fail("%s: %llu bytes, guest memory needs %llu", vm->cfg.mem_file,
					       (unsigned long long)st.st_size, (unsigned long long)mem);
			}
		}
	}
	int rc = 0;
	for (size_t i = 0; i < vm->nregions && rc == 0; i++) {
		struct lt_mem_region *r = &vm->regions[i];
		rc = map_region(vm, r, fd);
		if (rc == 0) {
			struct kvm_userspace_memory_region kr = {
				.slot = r->slot,
				.guest_phys_addr = r->gpa,
				.memory_size = r->size,
				.userspace_addr = (uint64_t)(uintptr_t)r->hva,
			};
			if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0)
				rc = lt_fail_errno("KVM_SET_USER_MEMORY_REGION slot %u", r->slot);
		}
	}
	if (fd >= 0)
		close(fd);
	vm->gmem.r = vm->regions;
	vm->gmem.n = vm->nregions;
	return rc;
}

const struct lt_mem_region *lt_vm_mem_regions(const struct lt_vm *vm, size_t *n)
{
	*n = vm->nregions;
	return vm->regions;
}

void *lt_vm_gpa_to_hva(const struct lt_vm *vm, uint64_t gpa, uint64_t len)
{
	return lt_gmem_ptr(&vm->gmem, gpa, len);
}

int lt_vm_mem_remap(struct lt_vm *vm, size_t idx, int fd, uint64_t offset, bool shared)
{
	if (idx >= vm->nregions)
		return lt_fail("memory region %zu does not exist", idx);
	if (vm->started && !vm->paused)
		return lt_fail("memory remap needs a paused VM");
	struct lt_mem_region *r = &vm->regions[idx];
	int flags = MAP_FIXED | MAP_NORESERVE | (shared ? MAP_SHARED : MAP_PRIVATE);
	if (fd < 0)
		flags |= MAP_ANONYMOUS;
	void *p = mmap(r->hva, r->size, PROT_READ | PROT_WRITE, flags, fd, (off_t)offset);
	if (p == MAP_FAILED)
		return lt_fail_errno("remap guest memory region %zu", idx);
	r->file_offset = offset;
	return 0;
}

/* ---- creation ----------------------------------------------------------- */

static int check_cap(struct lt_vm *vm, int cap)
{
	int r = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, cap);
	return r > 0 ? r : 0;
}

static int set_lint(struct lt_vcpu *v)
{
	/* LINT0 = ExtINT (legacy PIC), LINT1 = NMI, as a BIOS leaves them. */
	struct kvm_lapic_state la;
	if (ioctl(v->fd, KVM_GET_LAPIC, &la) < 0)
		return lt_fail_errno("KVM_GET_LAPIC");
	uint32_t lvt0, lvt1;
	memcpy(&lvt0, la.regs + 0x350, 4);
	memcpy(&lvt1, la.regs + 0x360, 4);
	lvt0 = (lvt0 & ~0x700U) | (7U << 8);
	lvt1 = (lvt1 & ~0x700U) | (4U << 8);
	memcpy(la.regs + 0x350, &lvt0, 4);
	memcpy(la.regs + 0x360, &lvt1, 4);
	if (ioctl(v->fd, KVM_SET_LAPIC, &la) < 0)
		return lt_fail_errno("KVM_SET_LAPIC");
	return 0;
}

static int create_vcpu(struct lt_vm *vm, int i)
{
	struct lt_vcpu *v = &vm->vcpus[i];
	v->vm = vm;
	v->idx = i;
	v->stat_fd = -1;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
	if (v->fd < 0)
		return lt_fail_errno("KVM_CREATE_VCPU %d", i);
	v->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		return lt_fail_errno("mmap kvm_run");
	}
	struct kvm_cpuid2 *c = lt_cpuid_for_vcpu(vm->cpuid, i, vm->nvcpus);
	if (!c)
		return -1;
	int r = ioctl(v->fd, KVM_SET_CPUID2, c);
	free(c);
	if (r < 0)
		return lt_fail_errno("KVM_SET_CPUID2 vCPU %d", i);
	return set_lint(v);
}

static void serial_irq(void *opaque)
{
	struct lt_vm *vm = opaque;
	struct kvm_irq_level l = {.irq = LT_SERIAL_IRQ, .level = 1};
	ioctl(vm->vm_fd, KVM_IRQ_LINE, &l);
	l.level = 0;
	ioctl(vm->vm_fd, KVM_IRQ_LINE, &l);
	lt_idle_kick(&vm->idle);
}

/* ---- coalesced serial transmit ------------------------------------------ */

static void replay_serial(void *arg, const struct kvm_coalesced_mmio *e)
{
	struct lt_vm *vm = arg;
	if (e->pio && e->len >= 1 && e->phys_addr >= LT_SERIAL_BASE &&
	    e->phys_addr < LT_SERIAL_BASE + 8)
		lt_serial_out(&vm->serial, (uint16_t)(e->phys_addr - LT_SERIAL_BASE), e->data[0]);
}

/* Replays what the guest wrote to the coalesced zone: at every exit before
 * it is handled (so output and events keep their order), on the I/O
 * thread's turns, and before device state is saved. */
static void cring_drain(struct lt_vm *vm)
{
	if (!vm->cring || __atomic_load_n(&vm->cring->first, __ATOMIC_RELAXED) ==
				  __atomic_load_n(&vm->cring->last, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&vm->cring_lock);
	lt_cring_drain(vm->cring, vm->cring_cap, replay_serial, vm);
	pthread_mutex_unlock(&vm->cring_lock);
}

void lt_vm_serial_sync(struct lt_vm *vm)
{
	if (!vm->cring)
		return;
	pthread_mutex_lock(&vm->cring_lock);
	lt_cring_drain(vm->cring, vm->cring_cap, replay_serial, vm);
	bool want = lt_serial_thr_plain(&vm->serial);
	if (want != vm->thr_coalesced) {
		struct kvm_coalesced_mmio_zone z = {.addr = LT_SERIAL_BASE, .size = 1, .pio = 1};
		unsigned long req = want ? KVM_REGISTER_COALESCED_MMIO : KVM_UNREGISTER_COALESCED_MMIO;
		if (ioctl(vm->vm_fd, req, &z) == 0)
			vm->thr_coalesced = want;
		else
			lt_debug("vmm: coalesced serial zone: %s", strerror(errno));
	}
	/* A write that raced with the unregistration. */
	lt_cring_drain(vm->cring, vm->cring_cap, replay_serial, vm);
	pthread_mutex_unlock(&vm->cring_lock);
}

/* The ring is the page at KVM_CAP_COALESCED_MMIO's offset in every vCPU's
 * kvm_run mapping (the same page for all of them). */
static void cring_setup(struct lt_vm *vm)
{
	int off = check_cap(vm, KVM_CAP_COALESCED_MMIO);
	long page = sysconf(_SC_PAGESIZE);
	if (vm->cfg.no_coalesced_io || off <= 0 || page <= 0 ||
	    !check_cap(vm, KVM_CAP_COALESCED_PIO) || (long)(off + 1) * page > vm->run_size)
		return;
	vm->cring = (struct kvm_coalesced_mmio_ring *)((char *)vm->vcpus[0].run + off * page);
	vm->cring_cap = lt_cring_capacity(page);
	lt_vm_serial_sync(vm);
}

static int copy_config(struct lt_vm *vm, const struct lt_vm_config *cfg)
{
	vm->cfg = *cfg;
	vm->cfg.mem_file = own(vm, cfg->mem_file);
	vm->cfg.kernel = own(vm, cfg->kernel);
	vm->cfg.initrd = own(vm, cfg->initrd);
	vm->cfg.cmdline = own(vm, cfg->cmdline);
	vm->cfg.vsock_uds = own(vm, cfg->vsock_uds);
	vm->cfg.tap = own(vm, cfg->tap);
	vm->cfg.control = own(vm, cfg->control);
	for (int i = 0; i < cfg->ndisks; i++) {
		vm->cfg.disks[i].path = own(vm, cfg->disks[i].path);
		vm->cfg.disks[i].overlay = own(vm, cfg->disks[i].overlay);
	}
	if (cfg->vcpus < 1 || cfg->vcpus > LT_VM_MAX_VCPUS)
		return lt_fail("vCPUs must be 1..%d, not %d", LT_VM_MAX_VCPUS, cfg->vcpus);
	if (cfg->mem_bytes < (4ULL << 20) || cfg->mem_bytes % 4096)
		return lt_fail("guest memory must be >= 4 MiB and page aligned");
	if (cfg->ndisks < 0 || cfg->ndisks > LT_VM_MAX_DISKS)
		return lt_fail("at most %d disks", LT_VM_MAX_DISKS);
	return 0;
}

int lt_vm_create(const struct lt_vm_config *cfg, struct lt_vm **out)
{
	if (install_kick_handler() < 0)
		return -1;
	uint64_t t0 = lt_now_ns();
	struct lt_vm *vm = lt_calloc(1, sizeof(*vm));
	if (!vm)
		return -1;
	vm->t_create = t0;
	vm->kvm_fd = vm->vm_fd = vm->stop_efd = -1;
	for (int i = 0; i < LT_VM_MAX_VCPUS; i++)
		vm->vcpus[i].fd = vm->vcpus[i].stat_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->cring_lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	lt_serial_init(&vm->serial, -1);
	if (copy_config(vm, cfg) < 0)
		goto fail;
	vm->nvcpus = cfg->vcpus;
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		lt_fail_errno("/dev/kvm");
		goto fail;
	}
	if (ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		lt_fail("/dev/kvm: unsupported KVM API version");
		goto fail;
	}
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		lt_fail_errno("KVM_CREATE_VM");
		goto fail;
	}
	if (!check_cap(vm, KVM_CAP_IMMEDIATE_EXIT)) {
		lt_fail("KVM lacks KVM_CAP_IMMEDIATE_EXIT (Linux >= 4.11 needed)");
		goto fail;
	}
	vm->has_irqfd = check_cap(vm, KVM_CAP_IRQFD) && !cfg->no_ioeventfd;
	vm->has_ioeventfd = check_cap(vm, KVM_CAP_IOEVENTFD) && !cfg->no_ioeventfd;
	int xs = check_cap(vm, KVM_CAP_XSAVE2);
	vm->has_xsave2 = xs > 0;
	vm->xsave_size = xs > (int)sizeof(struct kvm_xsave) ? xs : (int)sizeof(struct kvm_xsave);
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size <= 0) {
		lt_fail_errno("KVM_GET_VCPU_MMAP_SIZE");
		goto fail;
	}
	/* Memory slots first: after the irqchip exists each costs ~7 ms. */
	if (setup_memory(vm) < 0)
		goto fail;
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0) {
		lt_fail_errno("KVM_SET_TSS_ADDR");
		goto fail;
	}
	uint64_t idmap = KVM_IDMAP_ADDR;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0) {
		lt_fail_errno("KVM_SET_IDENTITY_MAP_ADDR");
		goto fail;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		lt_fail_errno("KVM_CREATE_IRQCHIP");
		goto fail;
	}
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		lt_fail_errno("KVM_CREATE_PIT2");
		goto fail;
	}
	if (lt_cpuid_build(vm->kvm_fd, cfg->cpu_template, &vm->cpuid) < 0)
		goto fail;
	for (int i = 0; i < vm->nvcpus; i++)
		if (create_vcpu(vm, i) < 0)
			goto fail;
	cring_setup(vm);
	vm->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_efd < 0) {
		lt_fail_errno("eventfd");
		goto fail;
	}
	vm->loop = lt_ioloop_new();
	if (!vm->loop)
		goto fail;
	lt_serial_init(&vm->serial, cfg->serial_out_fd);
	vm->serial.irq = serial_irq;
	vm->serial.irq_opaque = vm;
	if (lt_guestdev_init(&vm->guestdev, vm->nvcpus) < 0)
		goto fail;
	if (lt_vm_devices_create(vm) < 0)
		goto fail;
	if (vm->cfg.control && lt_control_open(vm, vm->cfg.control, &vm->control) < 0)
		goto fail;
	vm->t_created = lt_now_ns();
	*out = vm;
	return 0;
fail:
	lt_vm_destroy(vm);
	return -1;
}

/* ---- boot ----------------------------------------------------------------- */

static int load_file_map(const char *path, uint8_t **data, size_t *len, int *fdp)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return lt_fail_errno("%s", path);
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
		close(fd);
		return lt_fail("%s: not a non-empty regular file", path);
	}
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED) {
		close(fd);
		return lt_fail_errno("mmap %s", path);
	}
	*data = p;
	*len = (size_t)st.st_size;
	*fdp = fd;
	return 0;
}

static int set_boot_regs(struct lt_vm *vm, uint64_t entry)
{
	struct lt_vcpu *v = &vm->vcpus[0];
	struct kvm_sregs s;
	if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return lt_fail_errno("KVM_GET_SREGS");
	struct kvm_segment code = {.base = 0, .limit = 0xfffff, .selector = LT_BOOT_CS,
				   .type = 11, .present = 1, .dpl = 0, .db = 0, .s = 1,
				   .l = 1, .g = 1};
	struct kvm_segment data = code;
	data.selector = LT_BOOT_DS;
	data.type = 3;
	data.l = 0;
	data.db = 1;
	struct kvm_segment tss = code;
	tss.selector = LT_BOOT_TSS;
	tss.l = 0;
	tss.s = 0;
	s.cs = code;
	s.ds = s.es = s.fs = s.gs = s.ss = data;
	s.tr = tss;
	s.gdt.base = LT_BOOT_GDT;
	s.gdt.limit = 5 * 8 - 1;
	s.idt.base = LT_BOOT_IDT;
	s.idt.limit = 7;
	s.cr0 = 0x80050033ULL; /* PG WP NE ET MP PE */
	s.cr3 = LT_BOOT_PML4;
	s.cr4 = 0x20;           /* PAE */
	s.efer = 0x500;         /* LME LMA */
	if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0)
		return lt_fail_errno("KVM_SET_SREGS");
	struct kvm_regs r;
	memset(&r, 0, sizeof(r));
	r.rflags = 2;
	r.rip = entry;
	r.rsi = LT_BOOT_ZERO_PAGE;
	r.rsp = r.rbp = LT_BOOT_STACK;
	if (ioctl(v->fd, KVM_SET_REGS, &r) < 0)
		return lt_fail_errno("KVM_SET_REGS");
	struct kvm_fpu f;
	memset(&f, 0, sizeof(f));
	f.fcw = 0x37f;
	f.mxcsr = 0x1f80;
	if (ioctl(v->fd, KVM_SET_FPU, &f) < 0)
		return lt_fail_errno("KVM_SET_FPU");
	return 0;
}

static char *build_cmdline(struct lt_vm *vm)
{
	struct lt_buf b = {0};
	if (vm->cfg.cmdline && lt_buf_printf(&b, "%s", vm->cfg.cmdline) < 0)
		goto fail;
	for (int i = 0; i < vm->nvirtio; i++) {
		uint64_t base = LT_VM_VIRTIO_BASE + (uint64_t)i * LT_VM_VIRTIO_SIZE;
		if (lt_buf_printf(&b, "%svirtio_mmio.device=4K@0x%llx:%d", b.len ? " " : "",
				  (unsigned long long)base, LT_VM_VIRTIO_IRQ0 + i) < 0)
			goto fail;
	}
	if (lt_buf_cstr(&b) < 0)
		goto fail;
	return (char *)b.data;
fail:
	lt_buf_free(&b);
	return NULL;
}

int lt_vm_boot(struct lt_vm *vm)
{
	if (!vm->cfg.kernel)
		return lt_fail("no kernel given");
	uint8_t *img = NULL;
	size_t n = 0;
	int kfd = -1;
	if (load_file_map(vm->cfg.kernel, &img, &n, &kfd) < 0)
		return -1;
	struct lt_kernel k;
	int rc = lt_kernel_load(&vm->gmem, img, n, &k);
	munmap(img, n);
	close(kfd);
	if (rc < 0)
		return lt_fail_ctx("%s", vm->cfg.kernel);
	struct lt_boot_opts o = {.vcpus = vm->nvcpus, .regions = vm->regions,
				 .nregions = vm->nregions};
	if (vm->cfg.initrd) {
		int fd = open(vm->cfg.initrd, O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0) {
			if (fd >= 0)
				close(fd);
			return lt_fail_errno("%s", vm->cfg.initrd);
		}
		o.initrd_size = (uint64_t)st.st_size;
		o.initrd_addr = lt_boot_initrd_addr(&k, vm->regions[0].size, o.initrd_size);
		uint8_t *dst = o.initrd_addr ? lt_gmem_ptr(&vm->gmem, o.initrd_addr, o.initrd_size)
					     : NULL;
		if (!dst) {
			close(fd);
			return lt_fail("%s: initrd (%llu bytes) does not fit in guest RAM",
				       vm->cfg.initrd, (unsigned long long)o.initrd_size);
		}
		rc = lt_read_full(fd, dst, o.initrd_size);
		close(fd);
		if (rc < 0)
			return lt_fail_ctx("%s", vm->cfg.initrd);
	}
	free(vm->cmdline_full);
	vm->cmdline_full = build_cmdline(vm);
	if (!vm->cmdline_full)
		return -1;
	o.cmdline = vm->cmdline_full;
	if (lt_boot_write(&vm->gmem, &k, &o) < 0)
		return -1;
	if (set_boot_regs(vm, k.entry) < 0)
		return -1;
	vm->booted = true;
	vm->t_booted = lt_now_ns();
	return 0;
}

const char *lt_vm_cmdline(const struct lt_vm *vm)
{
	return vm->cmdline_full ? vm->cmdline_full : "";
}

void lt_vm_set_loaded(struct lt_vm *vm)
{
	vm->loaded = true;
}

/* ---- events ------------------------------------------------------------- */

void lt_vm_publish(struct lt_vm *vm, const char *line)
{
	if (vm->cfg.events_fd >= 0) {
		pthread_mutex_lock(&vm->lock);
		(void)lt_write_all(vm->cfg.events_fd, line, strlen(line));
		(void)lt_write_all(vm->cfg.events_fd, "\n", 1);
		pthread_mutex_unlock(&vm->lock);
	}
	if (vm->control)
		lt_control_publish(vm->control, line);
}

static void publish_json(struct lt_vm *vm, json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT);
	if (s) {
		lt_vm_publish(vm, s);
		free(s);
	}
	json_decref(o);
}

json_t *lt_guest_event_json(const struct lt_guest_event *ev, bool ok)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	json_object_set_new(o, "event", json_string(ok ? ev->name : "malformed"));
	json_object_set_new(o, "seq", json_integer((json_int_t)ev->seq));
	json_object_set_new(o, "vcpu", json_integer(ev->vcpu));
	switch (ok ? ev->type : LT_GEV_UNKNOWN) {
	case LT_GEV_LISTEN_BEFORE:
	case LT_GEV_BIND_BEFORE:
		json_object_set_new(o, "port", json_integer(ev->port));
		break;
	case LT_GEV_LISTEN_AFTER:
	case LT_GEV_BIND_AFTER:
		json_object_set_new(o, "port", json_integer(ev->port));
		json_object_set_new(o, "ret", json_integer(ev->code));
		break;
	case LT_GEV_EXIT:
	case LT_GEV_TRIGGER:
		json_object_set_new(o, "code", json_integer(ev->code));
		break;
	default:
		break;
	}
	if (!ok || ev->type == LT_GEV_LOG || ev->type == LT_GEV_UNKNOWN)
		json_object_set_new(o, "text", json_string(ev->text));
	return o;
}

static void publish_guest_event(struct lt_vm *vm, const struct lt_guest_event *ev, bool ok)
{
	json_t *o = lt_guest_event_json(ev, ok);
	if (o)
		publish_json(vm, o);
}

static void publish_simple(struct lt_vm *vm, const char *name)
{
	json_t *o = json_object();
	if (!o)
		return;
	json_object_set_new(o, "event", json_string(name));
	publish_json(vm, o);
}

/* Gets every vCPU (but except) out of KVM_RUN or an idle wait, to see
 * pause_req or stopping. */
static void kick_all(struct lt_vm *vm, int except)
{
	lt_idle_kick(&vm->idle);
	for (int i = 0; i < vm->nvcpus; i++)
		if (i != except && vm->vcpus[i].started)
			pthread_kill(vm->vcpus[i].thread, kick_sig);
}

void lt_vm_set_exit(struct lt_vm *vm, enum lt_vm_exit_reason r, const char *fmt, ...)
{
	pthread_mutex_lock(&vm->lock);
	bool first = !vm->exit_set;
	if (first) {
		vm->exit_set = true;
		vm->exit.reason = r;
		if (fmt) {
			va_list ap;
			va_start(ap, fmt);
			vsnprintf(vm->exit.message, sizeof(vm->exit.message), fmt, ap);
			va_end(ap);
		}
	}
	atomic_store(&vm->stopping, true);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	if (!first)
		return;
	uint64_t one = 1;
	(void)!write(vm->stop_efd, &one, sizeof(one));
	kick_all(vm, -1);
}

void lt_vm_request_stop(struct lt_vm *vm)
{
	uint64_t one = 1;
	(void)!write(vm->stop_efd, &one, sizeof(one));
}

/* ---- pause / resume ----------------------------------------------------- */

static int handle_exit(struct lt_vcpu *v, bool flushing);

/* Re-enters KVM_RUN with immediate_exit so KVM finishes the pending port
 * or MMIO instruction: only then is the register state consistent. */
static void flush_pending_io(struct lt_vcpu *v)
{
	for (int i = 0; i < 64; i++) {
		v->run->immediate_exit = 1;
		int r = ioctl(v->fd, KVM_RUN, 0);
		v->run->immediate_exit = 0;
		if (r < 0)
			return; /* EINTR: done */
		if (handle_exit(v, true) < 0)
			return;
	}
}

static void resume_locked(struct lt_vm *vm)
{
	atomic_store(&vm->pause_req, false);
	vm->paused = false;
	pthread_cond_broadcast(&vm->cond);
}

/* Parks the calling vCPU until resumed or stopped. ev != NULL: this vCPU
 * asked for the pause and runs on_paused once every vCPU is parked. */
static void park(struct lt_vcpu *v, const struct lt_guest_event *ev)
{
	struct lt_vm *vm = v->vm;
	flush_pending_io(v);
	pthread_mutex_lock(&vm->lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->cond);
	if (ev) {
		while (vm->parked < vm->running_threads && !atomic_load(&vm->stopping))
			pthread_cond_wait(&vm->cond, &vm->lock);
		vm->paused = true;
		pthread_mutex_unlock(&vm->lock);
		publish_simple(vm, "paused");
		enum lt_vm_action a = LT_VM_ACT_PAUSE;
		if (vm->cfg.on_paused)
			a = vm->cfg.on_paused(vm, ev, vm->cfg.user);
		if (a == LT_VM_ACT_STOP)
			lt_vm_set_exit(vm, LT_VM_EXIT_STOPPED, "stopped at %s", ev->name);
		pthread_mutex_lock(&vm->lock);
		if (a == LT_VM_ACT_CONTINUE) {
			resume_locked(vm);
			pthread_mutex_unlock(&vm->lock);
			publish_simple(vm, "resumed");
			pthread_mutex_lock(&vm->lock);
		}
	}
	while (atomic_load(&vm->pause_req) && !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->cond, &vm->lock);
	vm->parked--;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

static int pause_all(struct lt_vm *vm, bool internal)
{
	uint64_t t0 = lt_now_ns();
	pthread_mutex_lock(&vm->lock);
	if (!vm->started || atomic_load(&vm->stopping)) {
		pthread_mutex_unlock(&vm->lock);
		return lt_fail("VM is not running");
	}
	if (vm->paused) {
		pthread_mutex_unlock(&vm->lock);
		return 0;
	}
	atomic_store(&vm->pause_req, true);
	vm->internal_pause = internal;
	pthread_mutex_unlock(&vm->lock);
	kick_all(vm, -1);
	pthread_mutex_lock(&vm->lock);
	while (vm->parked < vm->running_threads && !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->cond, &vm->lock);
	vm->paused = true;
	vm->last_pause_ns = lt_now_ns() - t0;
	pthread_mutex_unlock(&vm->lock);
	if (!internal)
		publish_simple(vm, "paused");
	return 0;
}

int lt_vm_pause(struct lt_vm *vm)
{
	return pause_all(vm, false);
}

static int resume_all(struct lt_vm *vm, bool internal)
{
	uint64_t t0 = lt_now_ns();
	pthread_mutex_lock(&vm->lock);
	if (!vm->paused) {
		pthread_mutex_unlock(&vm->lock);
		return 0;
	}
	resume_locked(vm);
	/* The halt watch's probe must see its vCPUs running again before it
	 * looks at them; a caller's resume returns at once and the vCPU
	 * threads wake beside its next step (a wake's vsock connect). */
	while (internal && vm->parked > 0 && !atomic_load(&vm->pause_req) &&
	       !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->cond, &vm->lock);
	vm->last_resume_ns = lt_now_ns() - t0;
	pthread_mutex_unlock(&vm->lock);
	if (!internal)
		publish_simple(vm, "resumed");
	return 0;
}

int lt_vm_resume(struct lt_vm *vm)
{
	return resume_all(vm, false);
}

bool lt_vm_is_paused(struct lt_vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	bool p = vm->paused && !vm->internal_pause;
	pthread_mutex_unlock(&vm->lock);
	return p;
}

/* ---- exits ---------------------------------------------------------------- */

static void guest_byte(struct lt_vcpu *v, uint8_t b, bool flushing)
{
	struct lt_vm *vm = v->vm;
	struct lt_guest_event ev;
	int rc = lt_guestdev_out(&vm->guestdev, v->idx, b, &ev);
	if (rc == 0)
		return;
	atomic_fetch_add(&vm->st_events, 1);
	if (rc == 2) {
		lt_warn("guest device: malformed line from vCPU %d: %s", v->idx, ev.text);
		publish_guest_event(vm, &ev, false);
		return;
	}
	if (ev.type == LT_GEV_EXIT) {
		pthread_mutex_lock(&vm->lock);
		vm->exit.guest_exit_reported = true;
		vm->exit.guest_exit_code = ev.code;
		pthread_mutex_unlock(&vm->lock);
	}
	if (ev.type == LT_GEV_LOG)
		lt_info("guest: %s", ev.text);
	publish_guest_event(vm, &ev, true);
	enum lt_vm_action a = LT_VM_ACT_CONTINUE;
	if (vm->cfg.on_event)
		a = vm->cfg.on_event(vm, &ev, vm->cfg.user);
	if (ev.type == LT_GEV_POWEROFF)
		lt_vm_set_exit(vm, LT_VM_EXIT_POWEROFF, "guest powered off");
	if (a == LT_VM_ACT_STOP) {
		lt_vm_set_exit(vm, LT_VM_EXIT_STOPPED, "stopped at %s", ev.name);
	} else if (a == LT_VM_ACT_PAUSE && !flushing) {
		pthread_mutex_lock(&vm->lock);
		atomic_store(&vm->pause_req, true);
		vm->internal_pause = false;
		pthread_mutex_unlock(&vm->lock);
		kick_all(vm, v->idx);
		park(v, &ev);
	}
}

static void pio_out(struct lt_vcpu *v, uint16_t port, const uint8_t *d, int size, bool flushing)
{
	struct lt_vm *vm = v->vm;
	if (port >= LT_SERIAL_BASE && port < LT_SERIAL_BASE + 8) {
		uint16_t reg = (uint16_t)(port - LT_SERIAL_BASE);
		lt_serial_out(&vm->serial, reg, d[0]);
		if (reg == 1 || reg == 4) /* IER, MCR: may change what can coalesce */
			lt_vm_serial_sync(vm);
	} else if (port == LT_GUEST_PORT) {
		for (int i = 0; i < size; i++)
			guest_byte(v, d[i], flushing);
	} else if (port == LT_GUEST_IDLE_PORT && !flushing) {
		lt_idle_wait(&vm->idle, &v->idle_seen, d[0], &vm->pause_req, &vm->stopping);
	} else if (port == I8042_CMD && d[0] == I8042_RESET) {
		lt_vm_set_exit(vm, LT_VM_EXIT_RESET, "guest reset (i8042)");
	}
}

static void pio_in(struct lt_vcpu *v, uint16_t port, uint8_t *d, int size)
{
	struct lt_vm *vm = v->vm;
	if (port >= LT_SERIAL_BASE && port < LT_SERIAL_BASE + 8) {
		d[0] = lt_serial_in(&vm->serial, (uint16_t)(port - LT_SERIAL_BASE));
	} else if (port == LT_GUEST_PORT) {
		for (int i = 0; i < size; i++)
			d[i] = lt_guestdev_in(&vm->guestdev, v->idx);
	} else if (port == I8042_CMD || port == I8042_DATA) {
		d[0] = 0; /* no data, input buffer empty */
	} else {
		memset(d, 0xff, (size_t)size); /* nothing there */
	}
}

/* 0 = continue, -1 = the vCPU must stop. */
static int handle_exit(struct lt_vcpu *v, bool flushing)
{
	struct lt_vm *vm = v->vm;
	struct kvm_run *run = v->run;
	atomic_fetch_add(&vm->st_exits, 1);
	cring_drain(vm);
	switch (run->exit_reason) {
	case KVM_EXIT_IO: {
		atomic_fetch_add(&vm->st_io, 1);
		uint8_t *d = (uint8_t *)run + run->io.data_offset;
		int size = run->io.size;
		if (size != 1 && size != 2 && size != 4)
			return 0;
		if (run->io.data_offset + (uint64_t)size * run->io.count > (uint64_t)vm->run_size)
			return 0;
		for (uint32_t i = 0; i < run->io.count; i++, d += size) {
			if (run->io.direction == KVM_EXIT_IO_OUT)
				pio_out(v, run->io.port, d, size, flushing);
			else
				pio_in(v, run->io.port, d, size);
		}
		return 0;
	}
	case KVM_EXIT_MMIO:
		atomic_fetch_add(&vm->st_mmio, 1);
		if (run->mmio.len > 8)
			return 0;
		if (!lt_vm_mmio(vm, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
				run->mmio.is_write) &&
		    !run->mmio.is_write)
			memset(run->mmio.data, 0xff, run->mmio.len);
		return 0;
	case KVM_EXIT_INTR:
		return 0;
	case KVM_EXIT_HLT:
		return 0; /* only without an in-kernel LAPIC; the halt watch decides */
	case KVM_EXIT_SHUTDOWN: {
		struct kvm_regs r;
		memset(&r, 0, sizeof(r));
		ioctl(v->fd, KVM_GET_REGS, &r);
		lt_vm_set_exit(vm, LT_VM_EXIT_RESET, "triple fault on vCPU %d at rip 0x%llx", v->idx,
			       (unsigned long long)r.rip);
		return -1;
	}
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_RESET)
			lt_vm_set_exit(vm, LT_VM_EXIT_RESET, "guest reset");
		else if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN)
			lt_vm_set_exit(vm, LT_VM_EXIT_POWEROFF, "guest shutdown");
		else
			lt_vm_set_exit(vm, LT_VM_EXIT_ERROR, "guest system event %u",
				       run->system_event.type);
		return -1;
	case KVM_EXIT_FAIL_ENTRY:
		lt_vm_set_exit(vm, LT_VM_EXIT_ERROR, "vCPU %d: KVM entry failed (reason 0x%llx)",
			       v->idx,
			       (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return -1;
	case KVM_EXIT_INTERNAL_ERROR:
		lt_vm_set_exit(vm, LT_VM_EXIT_ERROR, "vCPU %d: KVM internal error (suberror %u)",
			       v->idx, run->internal.suberror);
		return -1;
	default:
		lt_vm_set_exit(vm, LT_VM_EXIT_ERROR, "vCPU %d: unhandled exit reason %u", v->idx,
			       run->exit_reason);
		return -1;
	}
}

static void *vcpu_main(void *arg)
{
	struct lt_vcpu *v = arg;
	struct lt_vm *vm = v->vm;
	tls_run = v->run;
	v->tid = (pid_t)syscall(SYS_gettid);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, kick_sig);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	for (;;) {
		if (atomic_load(&vm->stopping))
			break;
		if (atomic_load(&vm->pause_req)) {
			park(v, NULL);
			continue;
		}
		int r = ioctl(v->fd, KVM_RUN, 0);
		v->run->immediate_exit = 0;
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			lt_vm_set_exit(vm, LT_VM_EXIT_ERROR, "vCPU %d: KVM_RUN: %s", v->idx,
				       strerror(errno));
			break;
		}
		if (handle_exit(v, false) < 0)
			break;
	}
	pthread_mutex_lock(&vm->lock);
	vm->running_threads--;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	tls_run = NULL;
	return NULL;
}

/* ---- I/O thread and halt watch ---------------------------------------- */

static char thread_state(struct lt_vcpu *v)
{
	if (v->stat_fd < 0)
		return '?';
	char buf[256];
	ssize_t n = pread(v->stat_fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return '?';
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : '?';
}

/* Every vCPU stopped for good: halted with interrupts off, or never
 * started (APs waiting for INIT/SIPI). Called with all vCPUs parked. */
static bool all_halted(struct lt_vm *vm)
{
	bool any_halted = false;
	for (int i = 0; i < vm->nvcpus; i++) {
		struct kvm_mp_state mp;
		struct kvm_regs r;
		if (ioctl(vm->vcpus[i].fd, KVM_GET_MP_STATE, &mp) < 0 ||
		    ioctl(vm->vcpus[i].fd, KVM_GET_REGS, &r) < 0)
			return false;
		if (mp.mp_state == KVM_MP_STATE_HALTED) {
			if (r.rflags & 0x200)
				return false;
			any_halted = true;
		} else if (mp.mp_state != KVM_MP_STATE_UNINITIALIZED &&
			   mp.mp_state != KVM_MP_STATE_INIT_RECEIVED) {
			return false;
		}
	}
	return any_halted;
}

static void halt_watch(struct lt_vm *vm)
{
	/* A vCPU in a paravirtual idle wait is waiting for work, not halted. */
	if (lt_vm_is_paused(vm) || atomic_load(&vm->stopping) ||
	    atomic_load(&vm->idle.waiters) > 0)
		return;
	bool idle = true;
	for (int i = 0; i < vm->nvcpus && idle; i++) {
		char s = thread_state(&vm->vcpus[i]);
		if (s != 'S' && s != 'D')
			idle = false;
	}
	uint64_t now = lt_now_ns();
	if (!idle) {
		vm->halt_idle_samples = 0;
		return;
	}
	if (++vm->halt_idle_samples < 2 || now < vm->halt_next_probe_ns)
		return;
	if (pause_all(vm, true) < 0)
		return;
	bool halted = all_halted(vm);
	if (halted) {
		lt_vm_set_exit(vm, LT_VM_EXIT_HALT, "guest halted");
		return;
	}
	resume_all(vm, true);
	/* Idle with interrupts on (a guest waiting for work): look again later. */
	vm->halt_next_probe_ns = lt_now_ns() + 500ULL * 1000 * 1000;
}

static void on_stop_efd(void *opaque, int fd, uint32_t events)
{
	(void)events;
	struct lt_vm *vm = opaque;
	uint64_t v;
	if (read(fd, &v, sizeof(v)) == sizeof(v))
		lt_vm_set_exit(vm, LT_VM_EXIT_STOPPED, "stopped");
}

static void on_serial_in(void *opaque, int fd, uint32_t events)
{
	struct lt_vm *vm = opaque;
	size_t room = lt_serial_rx_room(&vm->serial);
	if (room == 0)
		return; /* try again on the next tick */
	uint8_t buf[256];
	ssize_t n = read(fd, buf, room < sizeof(buf) ? room : sizeof(buf));
	if (n > 0) {
		lt_serial_feed(&vm->serial, buf, (size_t)n);
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		lt_ioloop_del(vm->loop, fd); /* EOF: no more input */
	}
	(void)events;
}

static void *io_main(void *arg)
{
	struct lt_vm *vm = arg;
	uint64_t next_tick = 0;
	while (!atomic_load(&vm->stopping)) {
		/* A partial console line waits at most ~2 ms. */
		bool pending = lt_serial_pending(&vm->serial);
		if (lt_ioloop_poll(vm->loop, pending ? 2 : 10) < 0)
			lt_warn("vmm: %s", lt_errmsg());
		cring_drain(vm); /* a guest that prints, then computes */
		pending = pending || lt_serial_pending(&vm->serial);
		if (pending)
			lt_serial_flush(&vm->serial);
		uint64_t now = lt_now_ns();
		if (now >= next_tick) {
			next_tick = now + 10ULL * 1000 * 1000;
			halt_watch(vm);
		}
	}
	cring_drain(vm);
	lt_serial_flush(&vm->serial);
	return NULL;
}

int lt_vm_start(struct lt_vm *vm)
{
	if (!vm->booted && !vm->loaded)
		return lt_fail("VM has neither booted nor loaded state");
	if (vm->started)
		return lt_fail("VM already started");
	if (lt_ioloop_add(vm->loop, vm->stop_efd, EPOLLIN, on_stop_efd, vm) < 0)
		return -1;
	if (vm->cfg.serial_in_fd >= 0) {
		int fl = fcntl(vm->cfg.serial_in_fd, F_GETFL);
		if (fl >= 0)
			fcntl(vm->cfg.serial_in_fd, F_SETFL, fl | O_NONBLOCK);
		if (lt_ioloop_add(vm->loop, vm->cfg.serial_in_fd, EPOLLIN, on_serial_in, vm) < 0)
			lt_clear_error(); /* e.g. a regular file: no input */
	}
	if (lt_vm_devices_attach_loop(vm) < 0)
		return -1;
	/* Block the kick signal in the I/O and caller threads; vCPU threads
	 * unblock it for themselves. */
	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, kick_sig);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	pthread_mutex_lock(&vm->lock);
	vm->started = true;
	vm->running_threads = 0;
	pthread_mutex_unlock(&vm->lock);
	int rc = 0;
	for (int i = 0; i < vm->nvcpus && rc == 0; i++) {
		struct lt_vcpu *v = &vm->vcpus[i];
		pthread_mutex_lock(&vm->lock);
		vm->running_threads++;
		pthread_mutex_unlock(&vm->lock);
		int e = pthread_create(&v->thread, NULL, vcpu_main, v);
		if (e) {
			pthread_mutex_lock(&vm->lock);
			vm->running_threads--;
			pthread_mutex_unlock(&vm->lock);
			errno = e;
			rc = lt_fail_errno("pthread_create vCPU %d", i);
			break;
		}
		v->started = true;
	}
	if (rc == 0) {
		int e = pthread_create(&vm->io_thread, NULL, io_main, vm);
		if (e) {
			errno = e;
			rc = lt_fail_errno("pthread_create I/O thread");
		} else {
			vm->io_started = true;
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	/* Thread state files for the halt watch (tids are set by the threads). */
	for (int i = 0; i < vm->nvcpus && rc == 0; i++) {
		struct lt_vcpu *v = &vm->vcpus[i];
		for (int k = 0; k < 1000 && !__atomic_load_n(&v->tid, __ATOMIC_ACQUIRE); k++)
			usleep(100);
		char p[64];
		snprintf(p, sizeof(p), "/proc/self/task/%d/stat", (int)v->tid);
		v->stat_fd = open(p, O_RDONLY | O_CLOEXEC);
	}
	if (rc < 0)
		lt_vm_set_exit(vm, LT_VM_EXIT_ERROR, "%s", lt_errmsg());
	vm->t_started = lt_now_ns();
	return rc;
}

int lt_vm_wait(struct lt_vm *vm, struct lt_vm_exit *exit)
{
	if (vm->waited) {
		if (exit)
			*exit = vm->exit;
		return 0;
	}
	vm->waited = true;
	for (int i = 0; i < vm->nvcpus; i++)
		if (vm->vcpus[i].started) {
			pthread_join(vm->vcpus[i].thread, NULL);
			vm->vcpus[i].started = false;
		}
	lt_vm_set_exit(vm, LT_VM_EXIT_STOPPED, "stopped");
	if (vm->io_started) {
		pthread_join(vm->io_thread, NULL);
		vm->io_started = false;
	}
	json_t *o = json_object();
	if (o) {
		json_object_set_new(o, "event", json_string("stopped"));
		json_object_set_new(o, "reason", json_string(lt_vm_exit_reason_name(vm->exit.reason)));
		if (vm->exit.guest_exit_reported)
			json_object_set_new(o, "code", json_integer(vm->exit.guest_exit_code));
		json_object_set_new(o, "exits", json_integer((json_int_t)atomic_load(&vm->st_exits)));
		json_object_set_new(o, "io_exits", json_integer((json_int_t)atomic_load(&vm->st_io)));
		publish_json(vm, o);
	}
	if (vm->control)
		lt_control_drain(vm->control);
	if (vm->serial.wrote_any && vm->t_booted) {
		double ms = 1e-6;
		lt_info("vmm: timeline from lt_vm_create: created %.2f ms, booted %.2f ms, started "
			"%.2f ms, first serial byte %.2f ms",
			(double)(vm->t_created - vm->t_create) * ms,
			(double)(vm->t_booted - vm->t_create) * ms,
			(double)(vm->t_started - vm->t_create) * ms,
			(double)(vm->serial.first_byte_ns - vm->t_create) * ms);
	}
	if (exit)
		*exit = vm->exit;
	return 0;
}

void lt_vm_mark_restored(struct lt_vm *vm)
{
	lt_guestdev_mark_restored(&vm->guestdev);
}

void lt_vm_get_stats(struct lt_vm *vm, struct lt_vm_stats *st)
{
	st->exits = atomic_load(&vm->st_exits);
	st->io_exits = atomic_load(&vm->st_io);
	st->mmio_exits = atomic_load(&vm->st_mmio);
	st->events = atomic_load(&vm->st_events);
	pthread_mutex_lock(&vm->lock);
	st->last_pause_ns = vm->last_pause_ns;
	st->last_resume_ns = vm->last_resume_ns;
	pthread_mutex_unlock(&vm->lock);
}

int lt_vm_vcpu_count(const struct lt_vm *vm)
{
	return vm->nvcpus;
}

enum lt_cpu_template lt_vm_cpu_template(const struct lt_vm *vm)
{
	return vm->cfg.cpu_template;
}

const struct lt_vm_config *lt_vm_get_config(const struct lt_vm *vm)
{
	return &vm->cfg;
}

void lt_vm_status_json(struct lt_vm *vm, struct lt_buf *b)
{
	struct lt_vm_stats st;
	lt_vm_get_stats(vm, &st);
	const char *state = atomic_load(&vm->stopping) ? "stopping"
			    : lt_vm_is_paused(vm)      ? "paused"
						       : "running";
	json_t *o = json_pack("{s:b,s:s,s:i,s:I,s:s,s:I,s:I,s:I,s:I,s:I}", "ok", 1, "state", state,
			      "vcpus", vm->nvcpus, "mem_mib", (json_int_t)(vm->cfg.mem_bytes >> 20),
			      "cpu_template", lt_cpu_template_name(vm->cfg.cpu_template), "exits",
			      (json_int_t)st.exits, "io_exits", (json_int_t)st.io_exits, "events",
			      (json_int_t)st.events, "last_pause_ns", (json_int_t)st.last_pause_ns,
			      "last_resume_ns", (json_int_t)st.last_resume_ns);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	if (s)
		lt_buf_printf(b, "%s", s);
	free(s);
	json_decref(o);
}

void lt_vm_destroy(struct lt_vm *vm)
{
	if (!vm)
		return;
	if (vm->started && !vm->waited) {
		lt_vm_set_exit(vm, LT_VM_EXIT_STOPPED, "destroyed");
		lt_vm_wait(vm, NULL);
	}
	if (vm->control)
		lt_control_close(vm->control);
	lt_vm_devices_destroy(vm);
	for (int i = 0; i < vm->nvcpus; i++) {
		struct lt_vcpu *v = &vm->vcpus[i];
		if (v->run)
			munmap(v->run, (size_t)vm->run_size);
		if (v->fd >= 0)
			close(v->fd);
		if (v->stat_fd >= 0)
			close(v->stat_fd);
	}
	for (size_t i = 0; i < vm->nregions; i++)
		if (vm->regions[i].hva)
			munmap(vm->regions[i].hva, vm->regions[i].size);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->stop_efd >= 0)
		close(vm->stop_efd);
	lt_ioloop_free(vm->loop);
	if (vm->guestdev.v)
		lt_guestdev_free(&vm->guestdev);
	free(vm->cpuid);
	free(vm->msr_list);
	free(vm->cmdline_full);
	for (int i = 0; i < vm->nowned; i++)
		free(vm->owned[i]);
	free(vm);
}
