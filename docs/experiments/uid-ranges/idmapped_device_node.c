/* Why the idmapped mounts map every id (docs/security.md, "uid mapping").
 * A lower layer (owned by 100000) holding a char device owned by host root, mounted as an
 * overlay lower through an idmapped mount, opened O_RDWR from a user namespace mapping 0
 * to R (owned by R if OWN is 1, else by host root).
 *   gcc -o idmapped_device_node idmapped_device_node.c
 *   ./idmapped_device_node 300000 none 1                  -> O_RDWR ok
 *   ./idmapped_device_node 300000 "100000 300000 65536" 1 -> O_RDWR EACCES (also OWN=0, also from host root)
 *   ./idmapped_device_node 300000 "0 0 1
 *   100000 300000 65536" 1                                 -> O_RDWR ok (host root mapped too)
 * Usage: R IDMAP|none OWN. Works under /tmp/uidexp/v. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <grp.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <linux/mount.h>
static void wr(const char *p, const char *s){int fd=open(p,O_WRONLY);if(fd<0||write(fd,s,strlen(s))<0){fprintf(stderr,"write %s: %s\n",p,strerror(errno));exit(1);}close(fd);}
#define CK(x) do{ if((x)<0){fprintf(stderr,"FAIL %s: %s\n",#x,strerror(errno));} else fprintf(stderr,"ok: %s\n",#x);}while(0)
/* userns fd with given uid_map text */
static int userns(const char *map){
  int a[2]; pipe(a); pid_t p=fork(); if(!p){unshare(CLONE_NEWUSER); write(a[1],"x",1); pause(); _exit(0);} char c; read(a[0],&c,1);
  char path[64]; snprintf(path,64,"/proc/%d/uid_map",p); wr(path,map); snprintf(path,64,"/proc/%d/gid_map",p); wr(path,map);
  snprintf(path,64,"/proc/%d/ns/user",p); int fd=open(path,O_RDONLY); kill(p,9); waitpid(p,0,0); return fd;
}
int main(int argc,char**argv){
  unsigned R = atoi(argv[1]); const char *idmap = argv[2]; int own = atoi(argv[3]);
  system("umount -l /tmp/uidexp/v/merged 2>/dev/null; umount -l /tmp/uidexp/v/stage 2>/dev/null; rm -rf /tmp/uidexp/v; mkdir -p /tmp/uidexp/v/lower/devsrc /tmp/uidexp/v/upper /tmp/uidexp/v/work /tmp/uidexp/v/merged /tmp/uidexp/v/stage /tmp/uidexp/v/merged");
  mknod("/tmp/uidexp/v/lower/devsrc/null", S_IFCHR|0666, makedev(1,3)); chmod("/tmp/uidexp/v/lower/devsrc/null",0666);
  chown("/tmp/uidexp/v/lower",100000,100000); chown("/tmp/uidexp/v/lower/devsrc",100000,100000); chown("/tmp/uidexp/v/upper",R,R);
  int t = syscall(SYS_open_tree, AT_FDCWD, "/tmp/uidexp/v/lower", OPEN_TREE_CLONE|O_CLOEXEC);
  if (strcmp(idmap,"none")) {
    struct mount_attr at = { .attr_set = MOUNT_ATTR_IDMAP, .userns_fd = userns(idmap) };
    CK(syscall(SYS_mount_setattr, t, "", AT_EMPTY_PATH, &at, sizeof at));
  }
  CK(syscall(SYS_move_mount, t, "", AT_FDCWD, "/tmp/uidexp/v/stage", MOVE_MOUNT_F_EMPTY_PATH));
  CK(mount("overlay","/tmp/uidexp/v/merged","overlay",0,"lowerdir=/tmp/uidexp/v/stage,upperdir=/tmp/uidexp/v/upper,workdir=/tmp/uidexp/v/work"));
  umount2("/tmp/uidexp/v/stage", MNT_DETACH);
  system("ls -ln /tmp/uidexp/v/merged/devsrc/");
  int a[2], b[2]; pipe(a); pipe(b);
  pid_t pid = fork();
  if(pid==0){
    char c;
    if(own){ setgroups(0,NULL); CK(setresgid(R,R,R)); CK(setresuid(R,R,R)); prctl(PR_SET_DUMPABLE,1,0,0,0);}    
    CK(unshare(CLONE_NEWUSER|CLONE_NEWNS));
    write(a[1],"x",1); read(b[0],&c,1);
    CK(setresgid(0,0,0)); CK(setresuid(0,0,0));
    CK(open("/tmp/uidexp/v/merged/devsrc/null",O_RDONLY));
    CK(open("/tmp/uidexp/v/merged/devsrc/null",O_RDWR));
    exit(0);
  }
  char c; read(a[0],&c,1);
  char m[64]; snprintf(m,64,"0 %u 65536\n", R);
  char p[64]; snprintf(p,64,"/proc/%d/uid_map",pid); wr(p,m);
  snprintf(p,64,"/proc/%d/gid_map",pid); wr(p,m);
  write(b[1],"x",1); int st; waitpid(pid,&st,0); 
  CK(open("/tmp/uidexp/v/merged/devsrc/null",O_RDWR));
  system("umount -l /tmp/uidexp/v/merged"); return 0;
}
