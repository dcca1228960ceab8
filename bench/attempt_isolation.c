/* What isolating one job attempt costs, per `sh -c true` (BENCHMARKS.md, issue #15
 * defect 2; DECISIONS section 21). Build: gcc -O2 -o /tmp/isolation bench/attempt_isolation.c
 * Run: /tmp/isolation N MODE [QUEUECTL]  (MODE: plain pidns userpidns tinyexec guardexec
 * cgroup; pidns and cgroup need root, cgroup a v1 pids hierarchy at /sys/fs/cgroup/pids).
 * pidns/userpidns clone without CLONE_VM (a copy of this small program). Rotate the modes
 * over several rounds and take medians on a busy machine. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <spawn.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <time.h>
extern char **environ;
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec/1e9;}
static char *shargv[]={"sh","-c","true",0};
static int child(void*a){execve("/bin/sh",shargv,environ);_exit(127);}
static char stack[1<<16];
static void run(int flags){int pid=clone(child,stack+sizeof stack,flags|SIGCHLD,0);if(pid<0){perror("clone");exit(1);}waitpid(pid,0,0);}
static void spawn(char*p,char**argv){pid_t pid;posix_spawn(&pid,p,0,0,argv,environ);waitpid(pid,0,0);}
int main(int c,char**v){int n=atoi(v[1]);const char*mode=v[2];double t=now();
 for(int i=0;i<n;i++){
  if(!strcmp(mode,"plain")) run(CLONE_VM|CLONE_VFORK);
  else if(!strcmp(mode,"pidns")) run(CLONE_NEWPID);
  else if(!strcmp(mode,"userpidns")) run(CLONE_NEWUSER|CLONE_NEWPID);
  else if(!strcmp(mode,"guardexec")){ run(CLONE_VM|CLONE_VFORK); char*a[]={"queuectl","__attempt-guard",0}; spawn(v[3],a);}
  else if(!strcmp(mode,"tinyexec")){ run(CLONE_VM|CLONE_VFORK); char*a[]={"true",0}; spawn("/bin/true",a);}
  else if(!strcmp(mode,"cgroup")){ char d[128]; snprintf(d,sizeof d,"/sys/fs/cgroup/pids/qc-micro-%d",i); mkdir(d,0755);
     char f[160]; snprintf(f,sizeof f,"%s/cgroup.procs",d); int fd=open(f,O_WRONLY); char b[32]; int l=snprintf(b,sizeof b,"%d",getpid()); write(fd,b,l); close(fd);
     run(CLONE_VM|CLONE_VFORK);
     fd=open("/sys/fs/cgroup/pids/cgroup.procs",O_WRONLY); write(fd,b,l); close(fd); if(rmdir(d)){perror("rmdir");exit(1);} }
 }
 printf("%s %.1f us/job\n",mode,(now()-t)/n*1e6);}
